//! `[wallet]` and `[testing]`: the money policy of a node (docs/money.md). Invariant: amounts
//! are written as decimal strings of cloudcoin ("0.01"), parsed exactly, never as floats; a bad
//! value is reported with its line like every other key.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::money::{Amount, EnforceConfig, MIB, PayeeConfig, PayerConfig};

/// `[wallet]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalletSettings {
    /// How far below zero our balance may go (IOUs we sign).
    pub spend_limit: Amount,
    /// Unpaid debt each neighbour may run up with us at full service.
    pub credit_window: Amount,
    /// How long a neighbour may stay over 1.25 x the window before its data is cut.
    pub grace: Duration,
    /// Free tier for a neighbour over its window, bytes per second.
    pub free_bytes_per_sec: u64,
    /// The most one neighbour may ever owe us in total on its channel.
    pub max_channel: Amount,
    /// Pay at least this often while anything is owed.
    pub pay_interval: Duration,
    /// The largest credit window we act on as a payer, and the most resyncs may ever add to
    /// what we pay a neighbour beyond our own meter.
    pub max_accepted_window: Amount,
    /// The credit window we grant a neighbour found by discovery (not in `[[peer]]`).
    pub unknown_credit_window: Amount,
}

/// The largest value any `[wallet]` amount key accepts (a typo guard: 1,000 CC).
const MAX_AMOUNT_KEY: Amount = Amount::from_cc(1000);

impl Default for WalletSettings {
    fn default() -> Self {
        let e = EnforceConfig::default();
        WalletSettings {
            spend_limit: Amount::from_cc(1),
            credit_window: e.credit_window,
            grace: e.grace,
            free_bytes_per_sec: e.free_bytes_per_sec,
            max_channel: PayeeConfig::default().max_cumulative,
            pay_interval: PayerConfig::default().pay_interval,
            max_accepted_window: PayerConfig::default().max_window,
            unknown_credit_window: crate::node::MoneyConfig::default().unknown_credit_window,
        }
    }
}

impl WalletSettings {
    /// Our payee policy.
    pub fn payee(&self) -> PayeeConfig {
        PayeeConfig {
            enforce: EnforceConfig {
                credit_window: self.credit_window,
                grace: self.grace,
                free_bytes_per_sec: self.free_bytes_per_sec,
                free_burst_bytes: self.free_bytes_per_sec.saturating_mul(4).max(64 * 1024),
            },
            max_cumulative: self.max_channel,
            ..PayeeConfig::default()
        }
    }

    /// Our payer policy, paying at most `max_price_per_mib` (`[pricing]`).
    pub fn payer(&self, max_price_per_mib: Option<u64>) -> PayerConfig {
        PayerConfig {
            pay_interval: self.pay_interval,
            default_window: self.credit_window.min(self.max_accepted_window),
            max_window: self.max_accepted_window,
            max_price_per_mib: max_price_per_mib.unwrap_or(u64::MAX),
            ..PayerConfig::default()
        }
    }
}

/// `[testing]`: switches that exist only for tests. Only a build with the Cargo feature
/// `testing` (what `cargo test` builds, docs/testing.md) accepts the table; a production build
/// refuses a config that has one, so no real node can be told to stop paying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Testing {
    /// `pay = false`: forward traffic but never sign a voucher (to test enforcement).
    pub pay: bool,
}

impl Default for Testing {
    fn default() -> Self {
        Testing { pay: true }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWallet {
    spend_limit: Option<Spanned<String>>,
    credit_window: Option<Spanned<String>>,
    grace_secs: Option<Spanned<u64>>,
    free_bytes_per_sec: Option<Spanned<u64>>,
    max_channel: Option<Spanned<String>>,
    pay_interval_ms: Option<Spanned<u64>>,
    max_accepted_window: Option<Spanned<String>>,
    unknown_credit_window: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTesting {
    pay: Option<bool>,
}

impl RawTesting {
    /// The `[testing]` table, if the file has one: its switches in a test build, an error at
    /// the table in any other.
    pub(super) fn validate(raw: Option<&Spanned<RawTesting>>) -> Result<Testing, SpanError> {
        let Some(t) = raw else {
            return Ok(Testing::default());
        };
        if cfg!(feature = "testing") {
            Ok(Testing {
                pay: t.get_ref().pay.unwrap_or(true),
            })
        } else {
            Err((
                t.span(),
                "[testing] is accepted only by a test build of bitcloud (Cargo feature \
                 `testing`, which `cargo test` enables); remove the table from this config"
                    .into(),
            ))
        }
    }
}

/// A value error at a byte span of the file.
pub(super) type SpanError = (std::ops::Range<usize>, String);

fn amount(v: &Spanned<String>, positive: bool) -> Result<Amount, SpanError> {
    amount_at_most(v, positive, MAX_AMOUNT_KEY)
}

/// A decimal CC amount key, at most `max` (and above 0 if `positive`), errors at its span.
pub(super) fn amount_at_most(
    v: &Spanned<String>,
    positive: bool,
    max: Amount,
) -> Result<Amount, SpanError> {
    let a: Amount = v.get_ref().parse().map_err(|e| {
        (
            v.span(),
            format!("{:?} is not an amount of CC: {e}", v.get_ref()),
        )
    })?;
    if positive && a.is_zero() {
        return Err((v.span(), "must be above 0".into()));
    }
    if a > max {
        return Err((v.span(), format!("must be at most {max} CC")));
    }
    Ok(a)
}

impl RawWallet {
    pub(super) fn validate(&self) -> Result<WalletSettings, SpanError> {
        let mut w = WalletSettings::default();
        if let Some(v) = &self.spend_limit {
            w.spend_limit = amount(v, false)?;
        }
        if let Some(v) = &self.credit_window {
            w.credit_window = amount(v, true)?;
        }
        if let Some(v) = &self.max_channel {
            w.max_channel = amount(v, true)?;
        }
        if let Some(v) = &self.max_accepted_window {
            w.max_accepted_window = amount(v, true)?;
        }
        if let Some(v) = &self.unknown_credit_window {
            w.unknown_credit_window = amount(v, true)?;
            if w.unknown_credit_window > w.credit_window {
                return Err((v.span(), "must not be above credit_window".into()));
            }
        }
        if let Some(v) = &self.grace_secs {
            if !(1..=86_400).contains(v.get_ref()) {
                return Err((v.span(), "grace must be 1..=86400 seconds".into()));
            }
            w.grace = Duration::from_secs(*v.get_ref());
        }
        if let Some(v) = &self.free_bytes_per_sec {
            if *v.get_ref() > 1024 * MIB {
                return Err((v.span(), "free tier above 1 GiB/s".into()));
            }
            w.free_bytes_per_sec = *v.get_ref();
        }
        if let Some(v) = &self.pay_interval_ms {
            if !(100..=60_000).contains(v.get_ref()) {
                return Err((v.span(), "pay interval must be 100..=60000 ms".into()));
            }
            w.pay_interval = Duration::from_millis(*v.get_ref());
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, render_initial};
    use crate::money::Amount;

    fn parse(extra: &str) -> Result<Config, crate::config::ConfigError> {
        let base = render_initial(
            "node.key",
            "0.0.0.0:51820".parse().unwrap(),
            "bc0",
            "bc.sock",
            "data",
        );
        Config::parse(Path::new("/etc/bc/x.toml"), &format!("{base}{extra}"))
    }

    #[test]
    fn payer_policy_keys_default_bound_and_report_their_line() {
        let c = parse("").unwrap();
        assert_eq!(c.wallet.max_accepted_window, Amount::from_units(50_000_000));
        assert_eq!(
            c.wallet.unknown_credit_window,
            Amount::from_units(1_000_000)
        );
        assert_eq!(c.pricing.max_price_per_mib, Some(10_000_000));
        let payer = c.wallet.payer(c.pricing.max_price_per_mib);
        assert_eq!(
            (payer.max_window, payer.max_price_per_mib),
            (Amount::from_units(50_000_000), 10_000_000)
        );
        let c =
            parse("[wallet]\nmax_accepted_window = \"0.2\"\nunknown_credit_window = \"0.005\"\n")
                .unwrap();
        assert_eq!(
            c.wallet.max_accepted_window,
            Amount::from_units(200_000_000)
        );
        assert_eq!(
            c.wallet.unknown_credit_window,
            Amount::from_units(5_000_000)
        );
        for (text, key) in [
            (
                "[wallet]\nmax_accepted_window = \"0\"\n",
                "wallet.max_accepted_window",
            ),
            (
                "[wallet]\nmax_accepted_window = \"1001\"\n",
                "wallet.max_accepted_window",
            ),
            (
                "[wallet]\nunknown_credit_window = \"0.02\"\n",
                "wallet.unknown_credit_window",
            ),
            (
                "[wallet]\nunknown_credit_window = \"x\"\n",
                "wallet.unknown_credit_window",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.to_string().starts_with("/etc/bc/x.toml:"), "{e}");
            assert!(e.line > 10, "{e}");
        }
    }
}
