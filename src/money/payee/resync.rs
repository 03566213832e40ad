//! The payee's side of a resync: what it tells the payer after a handshake and what it accepts
//! back. Invariants: the meter is raised to the payer's own totals only on a fresh link (we
//! restarted); a newer voucher is checked like any other (bounds, signature, monotonicity,
//! progress, on-chain backing) and committed before it is credited; under a ledger, a genuine
//! voucher the chain does not back is left uncredited without losing the meter admission.

use super::super::messages::Resync;
use super::super::voucher::Voucher;
use super::super::{Action, Reject};
use super::{Check, PayeeChannel};

impl PayeeChannel {
    /// Our resync message: the latest credited voucher.
    pub fn resync(&self) -> Resync {
        Resync::of(self.state.id, self.state.latest, &self.state.meter)
    }

    /// The payer's resync. Our meter is raised to the payer's totals (its own admission, so
    /// it buys no credit; this heals an interval we lost in a restart). A newer voucher is
    /// verified like any other, without the metered check since the meter now covers it, and
    /// returned for commit. Older ones are kept out: we keep the max. Only for the resync
    /// that opens a session, before data flows: bytes in flight would otherwise count twice.
    pub fn on_resync(&mut self, r: &Resync) -> Result<Option<Action>, Reject> {
        self.on_resync_with(r, true)
    }

    /// [`PayeeChannel::on_resync`], raising our meter to the payer's totals only if
    /// `raise_meter` (we restarted, so the link is fresh and nothing of ours is in flight).
    /// A resync after a rekey, while data flows, keeps our meter: the payer's count includes
    /// frames still on their way to us, which we are about to count ourselves.
    pub fn on_resync_with(
        &mut self,
        r: &Resync,
        raise_meter: bool,
    ) -> Result<Option<Action>, Reject> {
        let res = self.check_resync(r);
        if let Err(e) = res {
            self.stats.rejects.bump(e);
        }
        let new = res?;
        let m = &mut self.state.meter;
        if raise_meter {
            m.raise_to(r.meter_bytes, r.meter_amount);
        }
        let Some(v) = new else { return Ok(None) };
        m.raise_to(v.cumulative_bytes, v.cumulative_amount);
        self.state.pending = Some(v);
        Ok(Some(Action::CommitThenCredit(v)))
    }

    fn check_resync(&self, r: &Resync) -> Result<Option<Voucher>, Reject> {
        if r.channel_id != self.state.id {
            return Err(Reject::WrongChannel);
        }
        if !r.in_bounds() {
            return Err(Reject::OutOfRange);
        }
        let Some(v) = r.latest else { return Ok(None) };
        match self.check_voucher(&v, false) {
            // The payer is behind us; our own resync tells it. Not an error unless its voucher
            // contradicts ours.
            Err(Reject::StaleSeq) => match self.state.latest {
                Some(l)
                    if v.cumulative_amount > l.cumulative_amount
                        || v.cumulative_bytes > l.cumulative_bytes =>
                {
                    Err(Reject::NonMonotonic)
                }
                _ => Ok(None),
            },
            // Under a ledger: the payer's genuine voucher that the chain does not back (yet,
            // or not this channel). It is not credited, but the meter admission still heals
            // what we lost in a restart; else every later voucher would be over our meter.
            Err(Reject::Unbacked | Reject::ForgedSignature)
                if self.needs_backing && v.verify(&self.state.params.payer) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
            Ok(Check::DuplicateLatest | Check::DuplicatePending) => Ok(None),
            Ok(Check::New) => Ok(Some(v)),
        }
    }
}
