//! The proleptic Gregorian calendar as days since 1970-01-01 — how dates and timestamps are held
//! everywhere (`ValueRef::Date`/`Timestamp`): the one copy, for the sources' decoders and the
//! query language's literals and JSON. Howard Hinnant's `days_from_civil`/`civil_from_days`.

/// Days of month `m` (1–12) of year `y`.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Years further from year 0 than this are no date anything here holds (an `i32` of days spans
/// ±5.8 million years, an `i64` of microseconds ±292 thousand); refusing them keeps the
/// arithmetic below far from overflowing whatever year a source or a query sends.
const MAX_ABS_YEAR: i64 = 1_000_000_000;

/// Days since 1970-01-01 of year `y`, month `m`, day `d` (`None` when that is not a date, or the
/// year is beyond ±1 000 000 000).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    if y.unsigned_abs() > MAX_ABS_YEAR.unsigned_abs()
        || !(1..=12).contains(&m)
        || d < 1
        || d > days_in_month(y, m)
    {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// The date `days` after 1970-01-01: (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        assert_eq!(days_from_civil(2023, 2, 29), None);
        assert_eq!(days_from_civil(2024, 13, 1), None);
        assert_eq!(days_from_civil(0, 1, 1), Some(-719_528));
        // Years no source can hold are not dates (and never overflow: a fuzzer found this).
        assert_eq!(days_from_civil(65_555_555_555_555_505, 10, 11), None);
        assert_eq!(days_from_civil(i64::MIN, 1, 1), None);
        assert!(days_from_civil(MAX_ABS_YEAR, 12, 31).is_some());
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), Some(days));
        }
    }
}
