//! Kubernetes resource quantities (`500m`, `16Gi`, `1e3`): parsing, canonical form and sums,
//! as the API server stores them (a quantity written as `1000m` reads back as `1`).

use std::fmt;

const NANO: i128 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// A quantity in units of 10^-9 (the real type's smallest scale), with the format that
/// decides how it prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    pub nanos: i128,
    pub format: Format,
}

/// The message the API server answers for a malformed quantity.
pub const PARSE_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

fn pow(base: i128, exp: u32) -> Option<i128> {
    base.checked_pow(exp)
}

impl Quantity {
    pub fn zero(format: Format) -> Quantity {
        Quantity { nanos: 0, format }
    }

    pub fn parse(s: &str) -> Result<Quantity, &'static str> {
        let s = s.trim();
        let num_end = s
            .char_indices()
            .find(|(i, c)| {
                !(c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '+' || *c == '-')))
            })
            .map(|(i, _)| i)
            .unwrap_or(s.len());
        let (num, suffix) = s.split_at(num_end);
        let (negative, digits) = match num.as_bytes().first() {
            Some(b'-') => (true, &num[1..]),
            Some(b'+') => (false, &num[1..]),
            _ => (false, num),
        };
        let (int_part, frac_part) = match digits.split_once('.') {
            Some((a, b)) => (a, b),
            None => (digits, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty())
            || frac_part.contains('.')
            || !int_part
                .chars()
                .chain(frac_part.chars())
                .all(|c| c.is_ascii_digit())
        {
            return Err(PARSE_ERROR);
        }
        // mantissa × 10^-frac_len
        let frac_len = frac_part.len() as u32;
        let mantissa: i128 = format!("{int_part}{frac_part}")
            .trim_start_matches('0')
            .parse::<i128>()
            .or_else(|e| {
                if format!("{int_part}{frac_part}").chars().all(|c| c == '0') {
                    Ok(0)
                } else {
                    Err(e)
                }
            })
            .map_err(|_| PARSE_ERROR)?;
        let (format, num, den): (Format, i128, i128) = match suffix {
            "" => (Format::DecimalSI, 1, 1),
            "n" => (Format::DecimalSI, 1, NANO),
            "u" => (Format::DecimalSI, 1, 1_000_000),
            "m" => (Format::DecimalSI, 1, 1000),
            "k" => (Format::DecimalSI, 1000, 1),
            "M" => (Format::DecimalSI, pow(10, 6).ok_or(PARSE_ERROR)?, 1),
            "G" => (Format::DecimalSI, pow(10, 9).ok_or(PARSE_ERROR)?, 1),
            "T" => (Format::DecimalSI, pow(10, 12).ok_or(PARSE_ERROR)?, 1),
            "P" => (Format::DecimalSI, pow(10, 15).ok_or(PARSE_ERROR)?, 1),
            "E" => (Format::DecimalSI, pow(10, 18).ok_or(PARSE_ERROR)?, 1),
            "Ki" => (Format::BinarySI, 1 << 10, 1),
            "Mi" => (Format::BinarySI, 1 << 20, 1),
            "Gi" => (Format::BinarySI, 1 << 30, 1),
            "Ti" => (Format::BinarySI, 1 << 40, 1),
            "Pi" => (Format::BinarySI, 1 << 50, 1),
            "Ei" => (Format::BinarySI, 1 << 60, 1),
            other => {
                let exp = other
                    .strip_prefix('e')
                    .or_else(|| other.strip_prefix('E'))
                    .ok_or(PARSE_ERROR)?;
                let e: i32 = exp.parse().map_err(|_| PARSE_ERROR)?;
                if !(-9..=30).contains(&e) {
                    return Err(PARSE_ERROR);
                }
                if e >= 0 {
                    (
                        Format::DecimalExponent,
                        pow(10, e as u32).ok_or(PARSE_ERROR)?,
                        1,
                    )
                } else {
                    (
                        Format::DecimalExponent,
                        1,
                        pow(10, (-e) as u32).ok_or(PARSE_ERROR)?,
                    )
                }
            }
        };
        // nanos = mantissa × num × 10^9 / (den × 10^frac_len), rounded up like the real type.
        let top = mantissa
            .checked_mul(num)
            .and_then(|v| v.checked_mul(NANO))
            .ok_or(PARSE_ERROR)?;
        let bottom = den
            .checked_mul(pow(10, frac_len).ok_or(PARSE_ERROR)?)
            .ok_or(PARSE_ERROR)?;
        let mut nanos = top / bottom;
        if top % bottom != 0 {
            nanos += 1;
        }
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }

    /// Parses a quantity given as a JSON string or number.
    pub fn from_json(v: &serde_json::Value) -> Result<Quantity, &'static str> {
        match v {
            serde_json::Value::String(s) => Quantity::parse(s),
            serde_json::Value::Number(n) => Quantity::parse(&n.to_string()),
            _ => Err(PARSE_ERROR),
        }
    }

    pub fn plus(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
            format: self.format,
        }
    }

    /// The value in whole units, rounded up (`500m` → 1).
    pub fn ceil_units(&self) -> i128 {
        let q = self.nanos / NANO;
        if self.nanos % NANO > 0 { q + 1 } else { q }
    }
}

impl fmt::Display for Quantity {
    /// The canonical form the API server writes back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.abs();
        if self.format == Format::BinarySI && abs % NANO == 0 && abs / NANO >= 1024 {
            let v = abs / NANO;
            let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            let mut k = 0;
            while k < 6 && v % (1i128 << (10 * (k + 1))) == 0 {
                k += 1;
            }
            return write!(f, "{sign}{}{}", v >> (10 * k), suffixes[k]);
        }
        // Decimal: the largest exponent (multiple of 3) leaving an integer mantissa.
        let mut exp: i32 = -9;
        let mut mantissa = abs;
        while exp < 18 && mantissa % 1000 == 0 {
            mantissa /= 1000;
            exp += 3;
        }
        let suffix = match (self.format, exp) {
            (Format::DecimalExponent, 0) => String::new(),
            (Format::DecimalExponent, e) => format!("e{e}"),
            (_, -9) => "n".into(),
            (_, -6) => "u".into(),
            (_, -3) => "m".into(),
            (_, 0) => String::new(),
            (_, 3) => "k".into(),
            (_, 6) => "M".into(),
            (_, 9) => "G".into(),
            (_, 12) => "T".into(),
            (_, 15) => "P".into(),
            _ => "E".into(),
        };
        write!(f, "{sign}{mantissa}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Quantity::parse(s)
            .map(|q| q.to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn canonical_forms_match_the_api_server() {
        assert_eq!(canon("1000m"), "1");
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("4"), "4");
        assert_eq!(canon("8"), "8");
        assert_eq!(canon("1500"), "1500");
        assert_eq!(canon("2000"), "2k");
        assert_eq!(canon("16Gi"), "16Gi");
        assert_eq!(canon("1.5Gi"), "1536Mi");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("0.5Ki"), "512");
        assert_eq!(canon("1e3"), "1e3");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("0Gi"), "0");
        assert_eq!(canon("-2"), "-2");
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for bad in ["", "abc", "1.2.3", "5Xi", "Gi", "1 Gi", "--1"] {
            assert_eq!(Quantity::parse(bad), Err(PARSE_ERROR), "{bad}");
        }
    }

    #[test]
    fn sums_keep_the_first_format() {
        let a = Quantity::parse("512Mi").expect("test value");
        let b = Quantity::parse("1Gi").expect("test value");
        assert_eq!(a.plus(b).to_string(), "1536Mi");
        let c = Quantity::parse("250m")
            .expect("test value")
            .plus(Quantity::parse("750m").expect("test value"));
        assert_eq!(c.to_string(), "1");
        assert_eq!(
            Quantity::parse("1500m").expect("test value").ceil_units(),
            2
        );
    }
}
