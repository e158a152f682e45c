//! Hostile input: depth bombs, huge counts, random and mutated bytes.
//!
//! Oracle for random input: decoding never panics; when it succeeds, re-encoding the value gives
//! back exactly the consumed bytes. The one non-canonical case is Boolean: any non-zero byte
//! decodes as `true` and is re-encoded as 1, so the bytes may differ exactly where the input had
//! a byte > 1 and the re-encoding wrote 1 (and the re-encoded form must then be stable).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use proptest::prelude::*;

use super::strategies;
use super::*;
use crate::error::DecodeErrorKind;
use crate::reader::DecodeLimits;

fn depth_exceeded<T: std::fmt::Debug>(res: Result<T, DecodeError>) -> bool {
    matches!(
        res,
        Err(DecodeError {
            kind: DecodeErrorKind::LimitExceeded {
                field: "nesting depth",
                limit: 100,
                ..
            },
            ..
        })
    )
}

/// `levels` Variants, each an array holding the next; the innermost is Empty.
fn nested_variant_arrays(levels: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(levels * 5 + 1);
    for _ in 1..levels {
        b.extend_from_slice(&[0x80 | 24, 1, 0, 0, 0]);
    }
    b.push(0);
    b
}

#[test]
fn variant_depth_bomb() {
    let ok = nested_variant_arrays(100);
    let mut r = Reader::new(&ok);
    let v = Variant::decode(&mut r).unwrap();
    assert!(r.is_empty());
    assert_eq!(r.depth(), 0);
    assert_eq!(v.to_vec(), ok);

    let bomb = nested_variant_arrays(101);
    let mut r = Reader::new(&bomb);
    assert!(depth_exceeded(Variant::decode(&mut r)));
    assert_eq!(r.depth(), 0);

    // Far past the limit: still a clean error, no stack overflow.
    let bomb = nested_variant_arrays(1_000_000);
    assert!(depth_exceeded(Variant::decode(&mut Reader::new(&bomb))));
}

#[test]
fn diagnostic_info_depth_bomb() {
    let mut ok = vec![0x40; 99];
    ok.push(0);
    let mut r = Reader::new(&ok);
    let d = DiagnosticInfo::decode(&mut r).unwrap();
    assert!(r.is_empty());
    assert_eq!(d.to_vec(), ok);

    let mut bomb = vec![0x40; 100];
    bomb.push(0);
    assert!(depth_exceeded(DiagnosticInfo::decode(&mut Reader::new(
        &bomb
    ))));
    let bomb = vec![0x40; 1_000_000];
    assert!(depth_exceeded(DiagnosticInfo::decode(&mut Reader::new(
        &bomb
    ))));
}

#[test]
fn mixed_depth_bomb() {
    // DataValue { Variant(DataValue { Variant(…) }) }: every DataValue and Variant counts.
    let mut bomb = Vec::new();
    for _ in 0..100_000 {
        bomb.extend_from_slice(&[0x01, 23]);
    }
    assert!(depth_exceeded(DataValue::decode(&mut Reader::new(&bomb))));
    // 50 DataValue + 49 Variant + innermost DataValue with no value = 100 levels.
    let mut ok = Vec::new();
    for _ in 0..49 {
        ok.extend_from_slice(&[0x01, 23]);
    }
    ok.push(0x00);
    assert!(DataValue::decode(&mut Reader::new(&ok)).is_ok());
    // Variant arrays of ExtensionObject inside Variant arrays of Variant.
    let mut bomb = Vec::new();
    for _ in 0..200 {
        bomb.extend_from_slice(&[0x80 | 24, 1, 0, 0, 0]);
    }
    bomb.extend_from_slice(&[0x80 | 22, 1, 0, 0, 0, 0, 0, 0]);
    assert!(depth_exceeded(Variant::decode(&mut Reader::new(&bomb))));
}

#[test]
fn limits_are_applied() {
    let mut r = Reader::new(&[0x80 | 3, 3, 0, 0, 0, 1, 2, 3]).with_limits(DecodeLimits {
        max_array_length: Some(2),
        ..DecodeLimits::default()
    });
    assert!(matches!(
        Variant::decode(&mut r).map_err(|e| e.kind),
        Err(DecodeErrorKind::LimitExceeded {
            limit: 2,
            actual: 3,
            ..
        })
    ));
    assert_eq!(r.depth(), 0);
    let mut r = Reader::new(&[12, 3, 0, 0, 0, b'a', b'b', b'c']).with_limits(DecodeLimits {
        max_string_length: Some(2),
        ..DecodeLimits::default()
    });
    assert!(matches!(
        Variant::decode(&mut r).map_err(|e| e.kind),
        Err(DecodeErrorKind::LimitExceeded {
            limit: 2,
            actual: 3,
            ..
        })
    ));
}

#[test]
fn huge_counts_with_few_bytes() {
    let big = [0xff, 0xff, 0xff, 0x7f];
    for t in 1u8..=25 {
        let mut b = vec![0x80 | t];
        b.extend_from_slice(&big);
        b.extend_from_slice(&[0; 3]);
        let err = Variant::decode(&mut Reader::new(&b)).unwrap_err();
        assert!(err.is_incomplete(), "type {t}: {err}");
    }
    let mut b = vec![0xC0 | 6, 1, 0, 0, 0, 1, 0, 0, 0];
    b.extend_from_slice(&big);
    let err = Variant::decode(&mut Reader::new(&b)).unwrap_err();
    assert!(err.is_incomplete());
    // String and ByteString lengths.
    for t in [12u8, 15, 16] {
        let mut b = vec![t];
        b.extend_from_slice(&big);
        assert!(Variant::decode(&mut Reader::new(&b))
            .unwrap_err()
            .is_incomplete());
    }
}

/// Re-encodes what decoded from `input` as `$ty` and compares with the consumed bytes.
macro_rules! check_reencode {
    ($ty:ident, $input:expr) => {{
        let input: &[u8] = $input;
        let mut r = Reader::new(input);
        if let Ok(value) = <$ty as Decode>::decode(&mut r) {
            prop_assert_eq!(r.depth(), 0);
            let consumed = &input[..r.position()];
            let again = value.to_vec();
            prop_assert_eq!(again.len(), value.encoded_len());
            prop_assert_eq!(again.len(), consumed.len());
            if again != consumed {
                // Only Boolean bytes > 1 may be normalised to 1.
                for (a, b) in consumed.iter().zip(&again) {
                    prop_assert!(
                        a == b || (*a > 1 && *b == 1),
                        "{} {:02x?} -> {:02x?}",
                        stringify!($ty),
                        consumed,
                        again
                    );
                }
            }
            // The re-encoded form is canonical: it decodes and re-encodes to itself.
            let mut r2 = Reader::new(&again);
            let v2 =
                <$ty as Decode>::decode(&mut r2).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(r2.is_empty());
            prop_assert_eq!(v2.to_vec(), again);
        } else {
            prop_assert_eq!(r.depth(), 0);
        }
    }};
}

fn check_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    check_reencode!(Variant, bytes);
    check_reencode!(DataValue, bytes);
    check_reencode!(DiagnosticInfo, bytes);
    check_reencode!(ExtensionObject, bytes);
    check_reencode!(NodeId, bytes);
    check_reencode!(ExpandedNodeId, bytes);
    check_reencode!(LocalizedText, bytes);
    check_reencode!(QualifiedName, bytes);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        check_all(&bytes)?;
    }

    /// Random bytes behind a valid-looking prefix, to get past the first byte more often.
    #[test]
    fn random_bytes_after_prefix(
        first in prop_oneof![0u8..=25, (0u8..=25).prop_map(|t| t | 0x80), (0u8..=25).prop_map(|t| t | 0xC0), 0u8..=0x7f],
        rest in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0xffu8), any::<u8>()], 0..64),
    ) {
        let mut bytes = vec![first];
        bytes.extend_from_slice(&rest);
        check_all(&bytes)?;
    }

    /// Valid encodings with a few bytes overwritten, truncated or extended.
    #[test]
    fn mutated_variants(
        v in strategies::variant(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = v.to_vec();
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        check_all(&bytes)?;
    }

    #[test]
    fn mutated_data_values(
        v in strategies::data_value(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = v.to_vec();
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        check_all(&bytes)?;
    }
}
