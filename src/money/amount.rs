//! Cloudcoin amounts. Owns [`Amount`] (unsigned, u128 smallest units) and [`SignedAmount`]
//! (i128 net positions). Invariant: no floating point anywhere; every operation is checked or
//! explicitly saturating, and text conversion is exact in both directions.
//!
//! 1 cloudcoin (CC) = 10^9 units. Nine decimals make the smallest realistic price (1 unit per
//! MiB) about a nano-coin per MiB, while u128 still leaves ~3.4e29 CC of headroom, so a u64
//! byte count times a u64 price (< 2^128) can never overflow.

use std::fmt;
use std::str::FromStr;

/// Decimal places of one cloudcoin.
pub const DECIMALS: u32 = 9;
/// Smallest units per cloudcoin (10^[`DECIMALS`]).
pub const UNITS_PER_CC: u128 = 1_000_000_000;

/// Errors from parsing or converting amounts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// The text was not `digits[.digits][ CC]`.
    #[error("invalid amount {0:?}: expected e.g. \"1.25\" or \"0.000000001 CC\"")]
    Syntax(String),
    /// More than nine decimal places: the value is not representable exactly.
    #[error("amount {0:?} has more than 9 decimal places")]
    TooPrecise(String),
    /// The value does not fit the type.
    #[error("amount overflow")]
    Overflow,
}

/// A non-negative amount of cloudcoin in smallest units.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u128);

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);
    /// The largest representable amount.
    pub const MAX: Amount = Amount(u128::MAX);

    /// From smallest units.
    pub const fn from_units(units: u128) -> Self {
        Amount(units)
    }

    /// From whole cloudcoins (cannot overflow: u64 * 10^9 < 2^128).
    pub const fn from_cc(whole: u64) -> Self {
        Amount(whole as u128 * UNITS_PER_CC)
    }

    /// The value in smallest units.
    pub const fn units(self) -> u128 {
        self.0
    }

    /// True if zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + rhs`, or `None` on overflow.
    pub fn checked_add(self, rhs: Amount) -> Option<Amount> {
        self.0.checked_add(rhs.0).map(Amount)
    }

    /// `self - rhs`, or `None` if it would go below zero.
    pub fn checked_sub(self, rhs: Amount) -> Option<Amount> {
        self.0.checked_sub(rhs.0).map(Amount)
    }

    /// `self + rhs`, clamped at [`Amount::MAX`].
    pub fn saturating_add(self, rhs: Amount) -> Amount {
        Amount(self.0.saturating_add(rhs.0))
    }

    /// `self - rhs`, clamped at zero.
    pub fn saturating_sub(self, rhs: Amount) -> Amount {
        Amount(self.0.saturating_sub(rhs.0))
    }

    /// `self * n`, or `None` on overflow.
    pub fn checked_mul(self, n: u128) -> Option<Amount> {
        self.0.checked_mul(n).map(Amount)
    }

    /// `self * num / den` rounded down, saturating; `den == 0` gives [`Amount::MAX`].
    /// Used for thresholds such as 1.25 x the credit window.
    pub fn mul_ratio(self, num: u128, den: u128) -> Amount {
        if den == 0 {
            return Amount::MAX;
        }
        // Split to avoid overflowing the intermediate product for large amounts.
        let q = self.0 / den;
        let r = self.0 % den;
        let hi = q.saturating_mul(num);
        let lo = r.saturating_mul(num) / den;
        Amount(hi.saturating_add(lo))
    }

    /// `self - rhs` as a signed net position, or `None` if it does not fit i128.
    pub fn signed_diff(self, rhs: Amount) -> Option<SignedAmount> {
        let a = i128::try_from(self.0).ok()?;
        let b = i128::try_from(rhs.0).ok()?;
        a.checked_sub(b).map(SignedAmount)
    }

    /// Fixed-width (39 digit, zero padded) decimal of the units: sorts like the number, which
    /// lets the wallet store amounts as TEXT and still compare them in SQL.
    pub fn to_db_text(self) -> String {
        format!("{:039}", self.0)
    }

    /// Inverse of [`Amount::to_db_text`] (accepts any plain decimal of units).
    pub fn from_db_text(s: &str) -> Result<Amount, AmountError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::Syntax(s.to_string()));
        }
        s.parse::<u128>()
            .map(Amount)
            .map_err(|_| AmountError::Overflow)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09} CC",
            self.0 / UNITS_PER_CC,
            self.0 % UNITS_PER_CC
        )
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    /// Parse `"12"`, `"1.25"`, `"0.000000001 CC"`: exact, no floats, at most 9 decimals.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || AmountError::Syntax(s.to_string());
        let t = s.trim();
        let t = t.strip_suffix("CC").map(str::trim_end).unwrap_or(t);
        let (whole, frac) = match t.split_once('.') {
            Some((w, f)) => (w, f),
            None => (t, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(syntax());
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        if frac.len() > DECIMALS as usize {
            return Err(AmountError::TooPrecise(s.to_string()));
        }
        let w: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| AmountError::Overflow)?
        };
        let mut f: u128 = 0;
        for b in frac.bytes() {
            f = f * 10 + u128::from(b - b'0');
        }
        for _ in frac.len()..DECIMALS as usize {
            f *= 10;
        }
        w.checked_mul(UNITS_PER_CC)
            .and_then(|x| x.checked_add(f))
            .map(Amount)
            .ok_or(AmountError::Overflow)
    }
}

impl serde::Serialize for Amount {
    /// As an exact decimal string of cloudcoins, e.g. `"1.250000000"` (JSON numbers are
    /// doubles and would round).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!(
            "{}.{:09}",
            self.0 / UNITS_PER_CC,
            self.0 % UNITS_PER_CC
        ))
    }
}

/// A signed net position (e.g. wallet balance = received - paid), in smallest units.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SignedAmount(pub i128);

impl SignedAmount {
    /// Zero.
    pub const ZERO: SignedAmount = SignedAmount(0);

    /// `self + rhs`, or `None` on overflow.
    pub fn checked_add(self, rhs: SignedAmount) -> Option<SignedAmount> {
        self.0.checked_add(rhs.0).map(SignedAmount)
    }

    /// `self - rhs`, or `None` on overflow.
    pub fn checked_sub(self, rhs: SignedAmount) -> Option<SignedAmount> {
        self.0.checked_sub(rhs.0).map(SignedAmount)
    }

    /// From an unsigned amount, or `None` above i128::MAX.
    pub fn from_amount(a: Amount) -> Option<SignedAmount> {
        i128::try_from(a.units()).ok().map(SignedAmount)
    }

    /// The positive part as an [`Amount`] (zero if negative).
    pub fn positive_part(self) -> Amount {
        Amount::from_units(u128::try_from(self.0).unwrap_or(0))
    }
}

impl fmt::Display for SignedAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let mag = Amount::from_units(self.0.unsigned_abs());
        write!(f, "{sign}{mag}")
    }
}

impl fmt::Debug for SignedAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for SignedAmount {
    /// As an exact decimal string of cloudcoins, e.g. `"-0.500000000"`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sign = if self.0 < 0 { "-" } else { "" };
        let mag = self.0.unsigned_abs();
        s.collect_str(&format_args!(
            "{sign}{}.{:09}",
            mag / UNITS_PER_CC,
            mag % UNITS_PER_CC
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_fixed_decimals() {
        assert_eq!(
            Amount::from_units(1_250_000_000).to_string(),
            "1.250000000 CC"
        );
        assert_eq!(Amount::from_units(1).to_string(), "0.000000001 CC");
        assert_eq!(Amount::ZERO.to_string(), "0.000000000 CC");
        assert_eq!(SignedAmount(-500_000_000).to_string(), "-0.500000000 CC");
        assert!(SignedAmount(i128::MIN).to_string().starts_with('-'));
        assert_eq!(
            serde_json::to_string(&SignedAmount(-1_500_000_001)).unwrap(),
            "\"-1.500000001\""
        );
        assert_eq!(
            serde_json::to_string(&Amount::from_units(7)).unwrap(),
            "\"0.000000007\""
        );
    }

    #[test]
    fn parse_exact() {
        assert_eq!("1.25".parse::<Amount>().unwrap().units(), 1_250_000_000);
        assert_eq!("1.25 CC".parse::<Amount>().unwrap().units(), 1_250_000_000);
        assert_eq!("0.000000001".parse::<Amount>().unwrap().units(), 1);
        assert_eq!(".5".parse::<Amount>().unwrap().units(), 500_000_000);
        assert_eq!("7.".parse::<Amount>().unwrap().units(), 7_000_000_000);
        assert_eq!("3".parse::<Amount>().unwrap(), Amount::from_cc(3));
        for bad in ["", ".", "-1", "1.2.3", "1e9", "abc", " CC", "+1", "1,5"] {
            assert!(bad.parse::<Amount>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "0.0000000001".parse::<Amount>(),
            Err(AmountError::TooPrecise("0.0000000001".into()))
        );
        assert_eq!(
            "340282366920938463463374607431.768211455"
                .parse::<Amount>()
                .unwrap(),
            Amount::MAX
        );
        assert_eq!(
            "340282366920938463463374607431.768211456".parse::<Amount>(),
            Err(AmountError::Overflow)
        );
    }

    #[test]
    fn arithmetic_checked_and_saturating() {
        assert_eq!(Amount::MAX.checked_add(Amount::from_units(1)), None);
        assert_eq!(Amount::ZERO.checked_sub(Amount::from_units(1)), None);
        assert_eq!(
            Amount::ZERO.saturating_sub(Amount::from_units(1)),
            Amount::ZERO
        );
        assert_eq!(
            Amount::MAX.saturating_add(Amount::from_units(1)),
            Amount::MAX
        );
        assert_eq!(Amount::from_units(100).mul_ratio(5, 4).units(), 125);
        assert_eq!(Amount::MAX.mul_ratio(5, 4), Amount::MAX);
        assert_eq!(Amount::MAX.signed_diff(Amount::ZERO), None);
        assert_eq!(
            Amount::from_units(1).signed_diff(Amount::from_units(3)),
            Some(SignedAmount(-2))
        );
    }

    proptest! {
        #[test]
        fn text_roundtrip(u in any::<u128>()) {
            let a = Amount::from_units(u);
            prop_assert_eq!(a.to_string().parse::<Amount>().unwrap(), a);
            prop_assert_eq!(Amount::from_db_text(&a.to_db_text()).unwrap(), a);
        }

        #[test]
        fn db_text_sorts_like_numbers(a in any::<u128>(), b in any::<u128>()) {
            let (x, y) = (Amount::from_units(a), Amount::from_units(b));
            prop_assert_eq!(x.to_db_text().cmp(&y.to_db_text()), a.cmp(&b));
        }

        #[test]
        fn mul_ratio_matches_wide_math(a in 0u128..(1u128 << 100), num in 0u128..1000, den in 1u128..1000) {
            prop_assert_eq!(Amount::from_units(a).mul_ratio(num, den).units(), a * num / den);
        }
    }
}
