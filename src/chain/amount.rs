//! Cloudcoin amounts on chain. Owns [`TokenScale`], the exact conversion between the node's
//! [`Amount`] (10^9 units per CC) and the token's base units (10^decimals per CC). Invariant:
//! units to token is exact (a multiplication); token to units rounds down, so a deposit read
//! from the chain is never overstated to the payee that bounds its credit by it.

use alloy_primitives::U256;

use crate::money::Amount;
use crate::money::amount::DECIMALS;

/// Why a token cannot carry cloudcoin amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenScaleError {
    /// Fewer decimals than our units: an amount would lose precision.
    #[error("the token has {0} decimals; cloudcoin amounts need at least {DECIMALS}")]
    TooFewDecimals(u8),
    /// More decimals than a u128 scale factor can hold.
    #[error("the token has {0} decimals; at most 38 + {DECIMALS} are supported")]
    TooManyDecimals(u8),
}

/// Token base units per cloudcoin unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenScale {
    factor: u128,
    decimals: u8,
}

impl TokenScale {
    /// The scale of a token with `decimals` decimals (the dev `Cloudcoin` has 18).
    pub fn new(decimals: u8) -> Result<Self, TokenScaleError> {
        let extra = u32::from(decimals)
            .checked_sub(DECIMALS)
            .ok_or(TokenScaleError::TooFewDecimals(decimals))?;
        let factor = 10u128
            .checked_pow(extra)
            .ok_or(TokenScaleError::TooManyDecimals(decimals))?;
        Ok(TokenScale { factor, decimals })
    }

    /// The token's decimals.
    pub fn decimals(&self) -> u8 {
        self.decimals
    }

    /// An amount in token base units (exact; a u128 times a u128 fits in 256 bits).
    pub fn to_token(&self, a: Amount) -> U256 {
        U256::from(a.units()) * U256::from(self.factor)
    }

    /// Token base units as an amount, rounded down; `None` above `Amount::MAX`.
    pub fn to_amount(&self, t: U256) -> Option<Amount> {
        let units = t / U256::from(self.factor);
        u128::try_from(units).ok().map(Amount::from_units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eighteen_decimals_scale_by_a_billion() {
        let s = TokenScale::new(18).unwrap();
        let one = Amount::from_cc(1);
        assert_eq!(s.to_token(one), U256::from(10u128.pow(18)));
        assert_eq!(s.to_amount(U256::from(10u128.pow(18))), Some(one));
        // Rounds down: 1.5 units of token are 1 unit.
        assert_eq!(
            s.to_amount(U256::from(1_500_000_000u128)),
            Some(Amount::from_units(1))
        );
    }

    #[test]
    fn edge_decimals() {
        assert_eq!(TokenScale::new(6), Err(TokenScaleError::TooFewDecimals(6)));
        assert!(TokenScale::new(9).is_ok());
        assert!(TokenScale::new(47).is_ok());
        assert_eq!(
            TokenScale::new(48),
            Err(TokenScaleError::TooManyDecimals(48))
        );
        let s = TokenScale::new(47).unwrap();
        assert_eq!(s.to_amount(s.to_token(Amount::MAX)), Some(Amount::MAX));
        assert_eq!(s.to_amount(U256::MAX), None);
    }
}
