//! Literal text → exact values: decimal numbers without float rounding, ISO dates and times.

use refract_schema::calendar::days_from_civil;

/// Microseconds in a day.
pub(crate) const DAY_US: i64 = 86_400_000_000;

/// An exact decimal number: `mantissa / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exact {
    pub mantissa: i128,
    pub scale: u32,
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Exact {
    /// Parse number text (`-12.50`, `1e3`, `2.5E-4`) exactly.
    pub(crate) fn parse(text: &str) -> Option<Exact> {
        let (neg, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (number, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = match number.split_once('.') {
            Some((i, f)) => (i, f.trim_end_matches('0')),
            None => (number, ""),
        };
        if int.is_empty() && frac.is_empty() && !number.contains('0') {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            if !b.is_ascii_digit() {
                return None;
            }
            mantissa = mantissa.checked_mul(10)?.checked_add((b - b'0') as i128)?;
        }
        let mut scale = (frac.len() as i64).checked_sub(exponent)?;
        if mantissa == 0 {
            scale = 0;
        }
        if scale < 0 {
            mantissa = mantissa.checked_mul(pow10(u32::try_from(scale.checked_neg()?).ok()?)?)?;
            scale = 0;
        }
        let scale = u32::try_from(scale).ok()?;
        Some(Exact {
            mantissa: if neg { -mantissa } else { mantissa },
            scale,
        })
    }

    /// `floor(self * 10^scale)` and whether a fraction was cut off; saturates far out of range.
    pub(crate) fn at_scale(&self, scale: u32) -> (i128, bool) {
        let m = self.mantissa;
        if self.scale <= scale {
            match pow10(scale - self.scale).and_then(|p| m.checked_mul(p)) {
                Some(v) => (v, false),
                None if m > 0 => (i128::MAX, true),
                None => (i128::MIN, true),
            }
        } else {
            match pow10(self.scale - scale) {
                Some(p) => (m.div_euclid(p), m.rem_euclid(p) != 0),
                None => (if m < 0 { -1 } else { 0 }, m != 0),
            }
        }
    }
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.i;
        let mut v: i64 = 0;
        while self.i < self.b.len() && self.i - start < max && self.b[self.i].is_ascii_digit() {
            v = v * 10 + (self.b[self.i] - b'0') as i64;
            self.i += 1;
        }
        (self.i - start >= min).then_some(v)
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn done(&self) -> bool {
        self.i == self.b.len()
    }

    /// `[:SS[.fffffffff]]` after `HH:MM`: microseconds and whether digits beyond them were non-zero.
    fn seconds(&mut self) -> Option<(i64, bool)> {
        if !self.eat(b':') {
            return Some((0, false));
        }
        let s = self.digits(2, 2)?;
        if s > 59 {
            return None;
        }
        let mut micros = s * 1_000_000;
        let mut frac = false;
        if self.eat(b'.') {
            let start = self.i;
            let mut place = 100_000;
            while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
                let d = (self.b[self.i] - b'0') as i64;
                if place > 0 {
                    micros += d * place;
                    place /= 10;
                } else if d != 0 {
                    frac = true;
                }
                self.i += 1;
            }
            if self.i == start {
                return None;
            }
        }
        Some((micros, frac))
    }
}

/// A parsed date or date-time literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateTimeLit {
    /// Microseconds since 1970-01-01T00:00:00 in the literal's own clock (zone not applied).
    pub micros: i128,
    /// Digits beyond microseconds were non-zero.
    pub frac: bool,
    /// The zone offset in seconds when the literal has one (`Z` is 0).
    pub offset: Option<i64>,
    /// Only a date was written.
    pub date_only: bool,
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.f…]]][Z|±HH[:MM]]`.
pub(crate) fn parse_datetime(text: &str) -> Option<DateTimeLit> {
    let mut s = Scan {
        b: text.as_bytes(),
        i: 0,
    };
    let y = s.digits(4, 6)?;
    if !s.eat(b'-') {
        return None;
    }
    let m = s.digits(1, 2)? as u32;
    if !s.eat(b'-') {
        return None;
    }
    let d = s.digits(1, 2)? as u32;
    let days = days_from_civil(y, m, d)? as i128;
    if s.done() {
        return Some(DateTimeLit {
            micros: days * DAY_US as i128,
            frac: false,
            offset: None,
            date_only: true,
        });
    }
    if !(s.eat(b'T') || s.eat(b't') || s.eat(b' ')) {
        return None;
    }
    let h = s.digits(2, 2)?;
    if !s.eat(b':') {
        return None;
    }
    let min = s.digits(2, 2)?;
    if h > 23 || min > 59 {
        return None;
    }
    let (sec, frac) = s.seconds()?;
    let micros = days * DAY_US as i128 + ((h * 60 + min) * 60_000_000 + sec) as i128;
    let offset = if s.eat(b'Z') || s.eat(b'z') {
        Some(0)
    } else if s.b.get(s.i).is_some_and(|c| *c == b'+' || *c == b'-') {
        let neg = s.b[s.i] == b'-';
        s.i += 1;
        let oh = s.digits(2, 2)?;
        s.eat(b':');
        let om = if s.done() { 0 } else { s.digits(2, 2)? };
        if oh > 23 || om > 59 {
            return None;
        }
        let secs = oh * 3600 + om * 60;
        Some(if neg { -secs } else { secs })
    } else {
        None
    };
    s.done().then_some(DateTimeLit {
        micros,
        frac,
        offset,
        date_only: false,
    })
}

/// `[-]H…H:MM[:SS[.f…]]` (MySQL `TIME` may be negative or beyond 24 hours).
pub(crate) fn parse_time(text: &str) -> Option<(i128, bool)> {
    let (neg, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let mut s = Scan {
        b: rest.as_bytes(),
        i: 0,
    };
    let h = s.digits(1, 9)?;
    if !s.eat(b':') {
        return None;
    }
    let m = s.digits(2, 2)?;
    if m > 59 {
        return None;
    }
    let (sec, frac) = s.seconds()?;
    if !s.done() {
        return None;
    }
    let micros = ((h * 60 + m) * 60_000_000 + sec) as i128;
    // A negative value with a cut-off fraction lies just below -micros.
    Some(if neg {
        (-micros - frac as i128, frac)
    } else {
        (micros, frac)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_numbers() {
        assert_eq!(
            Exact::parse("12.50"),
            Some(Exact {
                mantissa: 125,
                scale: 1
            })
        );
        assert_eq!(
            Exact::parse("-0.001"),
            Some(Exact {
                mantissa: -1,
                scale: 3
            })
        );
        assert_eq!(
            Exact::parse("1e3"),
            Some(Exact {
                mantissa: 1000,
                scale: 0
            })
        );
        assert_eq!(
            Exact::parse("2.5E-4"),
            Some(Exact {
                mantissa: 25,
                scale: 5
            })
        );
        assert_eq!(
            Exact::parse("0.0"),
            Some(Exact {
                mantissa: 0,
                scale: 0
            })
        );
        assert_eq!(Exact::parse("1e99999999999999999999"), None);
        assert_eq!(Exact::parse("1e-9223372036854775808"), None);
        assert_eq!(Exact::parse("0e-9223372036854775808"), None);
        assert_eq!(Exact::parse("1e9223372036854775807"), None);
        assert_eq!(Exact::parse("1".repeat(50).as_str()), None);
        let x = Exact::parse("0.1").unwrap();
        assert_eq!(x.at_scale(2), (10, false));
        assert_eq!(x.at_scale(0), (0, true));
        assert_eq!(Exact::parse("-1.5").unwrap().at_scale(0), (-2, true));
        assert_eq!(Exact::parse("1e-60").unwrap().at_scale(2), (0, true));
        assert_eq!(
            Exact::parse("1e30").unwrap().at_scale(20),
            (i128::MAX, true)
        );
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(
            parse_datetime("2024-01-01").unwrap().micros,
            19_723 * DAY_US as i128
        );
        let t = parse_datetime("2024-01-01T01:02:03.5+02:00").unwrap();
        assert_eq!(t.micros, 19_723 * DAY_US as i128 + 3_723_500_000);
        assert_eq!(t.offset, Some(7200));
        assert!(parse_datetime("2024-02-30").is_none());
        assert!(parse_datetime("2024-01-01 25:00").is_none());
        assert!(parse_datetime("2024-01-01 00:00:00.0000001").unwrap().frac);
        assert_eq!(
            parse_time("-838:59:59"),
            Some((-(838 * 3600 + 59 * 60 + 59) as i128 * 1_000_000, false))
        );
        assert_eq!(parse_time("12:30"), Some((45_000_000_000, false)));
        assert!(parse_time("12:3").is_none());
    }
}
