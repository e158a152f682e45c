//! DateTime (OPC 10000-6 §5.2.2.5): Int64 count of 100 ns ticks since 1601-01-01 00:00 UTC.

use std::fmt;

use bytes::BufMut;

use super::{Decode, IntoStatic};
use crate::encode::Encode;
use crate::error::DecodeError;
use crate::reader::Reader;

/// A UA DateTime, kept as the raw tick count so it re-encodes exactly.
///
/// 0 means "earliest representable" and `i64::MAX` "latest" (encoding.md §2); no clamping is
/// applied here: conversions are explicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DateTime(pub i64);

const TICKS_PER_SECOND: i64 = 10_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
/// Days from 1601-01-01 to 1970-01-01.
const DAYS_1601_TO_1970: i64 = 134_774;

impl DateTime {
    /// Ticks of the Unix epoch 1970-01-01 00:00 UTC (open62541 `UA_DATETIME_UNIX_EPOCH`).
    pub const UNIX_EPOCH_TICKS: i64 = 116_444_736_000_000_000;
    /// The "no time" value 0 (1601-01-01, or "earliest" for clamping peers).
    pub const MIN: DateTime = DateTime(0);
    /// The "latest" value peers clamp to.
    pub const MAX: DateTime = DateTime(i64::MAX);

    /// A DateTime from microseconds since the Unix epoch (saturating at the i64 range).
    pub fn from_unix_micros(us: i64) -> DateTime {
        DateTime(us.saturating_mul(10).saturating_add(Self::UNIX_EPOCH_TICKS))
    }

    /// Microseconds since the Unix epoch (rounded towards minus infinity, saturating).
    pub fn to_unix_micros(self) -> i64 {
        self.0.saturating_sub(Self::UNIX_EPOCH_TICKS).div_euclid(10)
    }

    /// RFC 3339 UTC with 100 ns precision, e.g. `2024-05-01T12:00:00.1234567Z` (proleptic
    /// Gregorian; negative ticks give years before 1601).
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }
}

/// Civil date for a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
///
/// Inputs are at most |i64::MAX / 864e9| ≈ 1.07e7 days, far from any overflow, so wrapping
/// operations never actually wrap.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.wrapping_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = doe
        .wrapping_sub(doe / 1460)
        .wrapping_add(doe / 36_524)
        .wrapping_sub(doe / 146_096)
        / 365;
    let doy = doe.wrapping_sub(
        yoe.wrapping_mul(365)
            .wrapping_add(yoe / 4)
            .wrapping_sub(yoe / 100),
    );
    let mp = doy.wrapping_mul(5).wrapping_add(2) / 153;
    let day = doy
        .wrapping_sub(mp.wrapping_mul(153).wrapping_add(2) / 5)
        .wrapping_add(1);
    let month = if mp < 10 {
        mp.wrapping_add(3)
    } else {
        mp.wrapping_sub(9)
    };
    let year = yoe
        .wrapping_add(era.wrapping_mul(400))
        .wrapping_add(i64::from(month <= 2));
    (
        year,
        u32::try_from(month).unwrap_or(0),
        u32::try_from(day).unwrap_or(0),
    )
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(TICKS_PER_SECOND);
        let frac = self.0.rem_euclid(TICKS_PER_SECOND);
        let days = secs.div_euclid(SECONDS_PER_DAY);
        let sod = secs.rem_euclid(SECONDS_PER_DAY);
        let (y, m, d) = civil_from_days(days.wrapping_sub(DAYS_1601_TO_1970));
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )?;
        if frac != 0 {
            write!(f, ".{frac:07}")?;
        }
        f.write_str("Z")
    }
}

impl<'a> Decode<'a> for DateTime {
    const MIN_ENCODED_LEN: usize = 8;

    #[inline]
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        r.read_i64("DateTime").map(DateTime)
    }

    #[inline]
    fn decode_into(
        r: &mut Reader<'a>,
        count: usize,
        out: &mut Vec<Self>,
    ) -> Result<(), DecodeError> {
        let bytes = r.take(count.saturating_mul(8), "DateTime")?;
        out.extend(
            bytes
                .chunks_exact(8)
                .map(|c| DateTime(i64::from_le_bytes(c.try_into().unwrap_or([0u8; 8])))),
        );
        Ok(())
    }
}

impl Encode for DateTime {
    #[inline]
    fn encoded_len(&self) -> usize {
        8
    }

    #[inline]
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_i64_le(self.0)
    }
}

impl IntoStatic for DateTime {
    type Static = DateTime;
    fn into_static(self) -> DateTime {
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]

    use super::*;
    use crate::types::strategies;
    use proptest::prelude::*;

    #[test]
    fn epoch_and_text_form() {
        assert_eq!(DateTime(0).to_string(), "1601-01-01T00:00:00Z");
        assert_eq!(
            DateTime(DateTime::UNIX_EPOCH_TICKS).to_string(),
            "1970-01-01T00:00:00Z"
        );
        // 2024-02-29T12:34:56.789Z = 1709210096789000 µs since the Unix epoch.
        let t = DateTime::from_unix_micros(1_709_210_096_789_000);
        assert_eq!(t.to_rfc3339(), "2024-02-29T12:34:56.7890000Z");
        assert_eq!(t.to_unix_micros(), 1_709_210_096_789_000);
        assert_eq!(
            DateTime(i64::MAX).to_string(),
            "30828-09-14T02:48:05.4775807Z"
        );
        assert_eq!(DateTime(-1).to_string(), "1600-12-31T23:59:59.9999999Z");
    }

    #[test]
    fn wire_form() {
        let t = DateTime(DateTime::UNIX_EPOCH_TICKS);
        let bytes = t.to_vec();
        assert_eq!(bytes, 116_444_736_000_000_000i64.to_le_bytes());
        assert_eq!(DateTime::decode(&mut Reader::new(&bytes)).unwrap(), t);
    }

    proptest! {
        #[test]
        fn roundtrip(v in strategies::date_time()) {
            crate::types::strategies::check_roundtrip!(DateTime, v);
        }

        #[test]
        fn display_never_panics(t in any::<i64>()) {
            let s = DateTime(t).to_string();
            prop_assert!(s.ends_with('Z'));
        }
    }
}
