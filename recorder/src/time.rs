//! Capture time.

use std::fmt;

/// A point in time as nanoseconds since the Unix epoch (UTC). Ours rather than `SystemTime`,
/// so capture times, not the wall clock, drive offline analysis, and it is `Copy` + `Ord`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Nanoseconds since 1970-01-01T00:00:00Z; negative before the epoch.
    pub unix_nanos: i64,
}

impl Timestamp {
    /// Builds a timestamp from nanoseconds, the resolution of pcapng `if_tsresol = 9` and
    /// nanosecond pcap files.
    #[must_use]
    pub const fn from_unix_nanos(unix_nanos: i64) -> Self {
        Timestamp { unix_nanos }
    }

    /// Builds a timestamp from microseconds, the default resolution of pcap and pcapng;
    /// saturates outside ±292 years.
    #[must_use]
    pub const fn from_unix_micros(unix_micros: i64) -> Self {
        Timestamp {
            unix_nanos: unix_micros.saturating_mul(1_000),
        }
    }

    /// Builds a timestamp from seconds plus nanoseconds, the shape of classic pcap records.
    #[must_use]
    pub const fn from_secs_nanos(secs: i64, nanos: i64) -> Self {
        Timestamp {
            unix_nanos: secs.saturating_mul(1_000_000_000).saturating_add(nanos),
        }
    }

    /// Microseconds since the epoch (rounded toward negative infinity), for pcap writers and
    /// display.
    #[must_use]
    pub const fn unix_micros(self) -> i64 {
        self.unix_nanos.div_euclid(1_000)
    }

    /// Signed distance `self - earlier` in nanoseconds, saturating; for timeouts and gaps.
    #[must_use]
    pub const fn nanos_since(self, earlier: Timestamp) -> i64 {
        self.unix_nanos.saturating_sub(earlier.unix_nanos)
    }
}

impl fmt::Display for Timestamp {
    /// Seconds since the epoch with nine decimals, like `tshark -t e`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.unix_nanos.div_euclid(1_000_000_000);
        let nanos = self.unix_nanos.rem_euclid(1_000_000_000);
        write!(f, "{secs}.{nanos:09}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        let t = Timestamp::from_unix_micros(1_700_000_000_123_456);
        assert_eq!(t.unix_nanos, 1_700_000_000_123_456_000);
        assert_eq!(t.unix_micros(), 1_700_000_000_123_456);
        assert_eq!(t.to_string(), "1700000000.123456000");
        assert_eq!(
            Timestamp::from_secs_nanos(1, 5),
            Timestamp::from_unix_nanos(1_000_000_005)
        );
        assert_eq!(Timestamp::from_unix_nanos(-1).to_string(), "-1.999999999");
        assert_eq!(Timestamp::from_unix_micros(i64::MAX).unix_nanos, i64::MAX);
        assert_eq!(
            Timestamp::from_unix_nanos(10).nanos_since(Timestamp::from_unix_nanos(4)),
            6
        );
    }
}
