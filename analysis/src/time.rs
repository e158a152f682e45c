//! Time as the analysis sees it: given by the caller (capture time offline, wall clock live).

use std::fmt;

/// A point in time, microseconds since the Unix epoch (UTC).
///
/// The analysis owns no clock: every input carries its timestamp, so offline runs use the
/// capture's times and tests can drive time deterministically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Microseconds since 1970-01-01T00:00:00Z.
    pub unix_micros: i64,
}

impl Timestamp {
    /// A timestamp from microseconds since the Unix epoch.
    pub fn from_unix_micros(unix_micros: i64) -> Self {
        Timestamp { unix_micros }
    }

    /// A timestamp from an OPC UA DateTime (100 ns ticks since 1601-01-01).
    pub fn from_ua_ticks(ticks: i64) -> Self {
        const UNIX_EPOCH_TICKS: i64 = 116_444_736_000_000_000;
        Timestamp {
            unix_micros: ticks.saturating_sub(UNIX_EPOCH_TICKS) / 10,
        }
    }

    /// Milliseconds elapsed since `earlier` (negative if `earlier` is later).
    pub fn millis_since(self, earlier: Timestamp) -> f64 {
        (self.unix_micros.saturating_sub(earlier.unix_micros)) as f64 / 1000.0
    }

    /// RFC 3339 UTC with microseconds, e.g. `2026-11-23T19:31:56.041123Z`.
    pub fn to_rfc3339(self) -> String {
        let mut s = String::with_capacity(27);
        self.write_rfc3339(&mut s);
        s
    }

    /// Appends the RFC 3339 form to `out` (the event writer's hot path: no formatter). The
    /// last form written on this thread is kept: the events of one read all carry its time,
    /// and each is written to the log and to a packet comment.
    pub fn write_rfc3339(self, out: &mut String) {
        thread_local! {
            static LAST: std::cell::Cell<(i64, [u8; 27])> =
                const { std::cell::Cell::new((i64::MIN, [0; 27])) };
        }
        let (at, text) = LAST.get();
        if at == self.unix_micros {
            out.push_str(std::str::from_utf8(&text).unwrap_or(""));
            return;
        }
        if let Some(text) = self.rfc3339_bytes() {
            LAST.set((self.unix_micros, text));
            out.push_str(std::str::from_utf8(&text).unwrap_or(""));
        } else {
            use std::fmt::Write;
            let _ = write!(out, "{self}");
        }
    }

    /// The RFC 3339 form for years 0 to 9999 (27 bytes), else `None`.
    fn rfc3339_bytes(self) -> Option<[u8; 27]> {
        let secs = self.unix_micros.div_euclid(1_000_000);
        let micros = self.unix_micros.rem_euclid(1_000_000);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        let mut b = [0u8; 27];
        let mut put = |at: usize, v: i64, width: usize| {
            let mut v = v;
            for i in (0..width).rev() {
                if let Some(slot) = b.get_mut(at + i) {
                    *slot = b'0' + (v % 10) as u8;
                }
                v /= 10;
            }
        };
        put(0, y, 4);
        put(5, i64::from(m), 2);
        put(8, i64::from(d), 2);
        put(11, sod / 3600, 2);
        put(14, (sod / 60) % 60, 2);
        put(17, sod % 60, 2);
        put(20, micros, 6);
        for (at, c) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (26, b'Z'),
        ] {
            if let Some(slot) = b.get_mut(at) {
                *slot = c;
            }
        }
        (0..=9999).contains(&y).then_some(b)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.unix_micros.div_euclid(1_000_000);
        let micros = self.unix_micros.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }
}

/// Gregorian date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_and_formatter_forms_agree() {
        for us in [
            0,
            1,
            951_782_400_000_001,
            1_795_462_316_041_123,
            -1,
            253_402_300_799_999_999,
        ] {
            let t = Timestamp::from_unix_micros(us);
            assert_eq!(t.to_rfc3339(), t.to_string(), "{us}");
            // Again, from the form kept for the last time written.
            assert_eq!(t.to_rfc3339(), t.to_string(), "{us} again");
        }
        // Out of range (year 10000): not kept; the time before is still right after it.
        let (before, far) = (
            Timestamp::from_unix_micros(1),
            Timestamp::from_unix_micros(i64::MAX),
        );
        assert_eq!(before.to_rfc3339(), "1970-01-01T00:00:00.000001Z");
        assert_eq!(far.to_rfc3339(), far.to_string());
        assert_eq!(before.to_rfc3339(), "1970-01-01T00:00:00.000001Z");
    }

    #[test]
    fn formats_rfc3339_with_micros() {
        assert_eq!(
            Timestamp::from_unix_micros(0).to_string(),
            "1970-01-01T00:00:00.000000Z"
        );
        // 2026-11-23T19:31:56.041123Z
        assert_eq!(
            Timestamp::from_unix_micros(1_795_462_316_041_123).to_string(),
            "2026-11-23T19:31:56.041123Z"
        );
        assert_eq!(
            Timestamp::from_unix_micros(951_782_400_000_001).to_string(),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(
            Timestamp::from_ua_ticks(116_444_736_000_000_000).unix_micros,
            0
        );
    }
}
