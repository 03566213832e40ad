//! The payer's side of a resync: what it tells the payee after a handshake and what it accepts
//! back. Invariants: a resync is acted on once per handshake; it may adopt only vouchers we
//! signed, and raise our meter by at most the credit window, at most `max_window` in total
//! over the channel's life (docs/money.md, "What a node can lose").

use super::super::messages::{Resync, VoucherAck};
use super::super::voucher::Voucher;
use super::super::{Action, Reject};
use super::PayerChannel;

impl PayerChannel {
    /// Our resync message: the latest committed voucher.
    pub fn resync(&self) -> Resync {
        Resync::of(self.state.id, self.state.latest, &self.state.meter)
    }

    /// The payee's resync, acted on only once per handshake ([`PayerChannel::expect_resync`]).
    /// If it holds a newer voucher that we signed (we restored an old backup), adopt it: seq
    /// continues above it and the meter is raised to it. If its meter is ahead of ours (we lost
    /// a checkpoint interval), raise ours to it, but by at most the credit window and, over
    /// the channel's life, by at most `max_window` in total: more would be an unsigned claim
    /// that a hostile payee could repeat at will.
    pub fn on_resync(&mut self, r: &Resync) -> Result<Option<Action>, Reject> {
        let res = if !self.state.resync_expected {
            Err(Reject::UnexpectedResync)
        } else if !r.in_bounds() {
            Err(Reject::OutOfRange)
        } else {
            self.check_resync(r)
        };
        if let Err(e) = res {
            self.stats.rejects.bump(e);
        }
        let adopt = res?;
        self.state.resync_expected = false;
        let allowance = self.window().min(self.state.resync_budget);
        let m = &mut self.state.meter;
        let before = m.total_cost();
        let amount = r.meter_amount.min(before.saturating_add(allowance));
        // No budget left (or none ever, `forgo_resync_raise`): the payee's count raises
        // nothing, not even the byte total.
        if !allowance.is_zero() {
            m.raise_to(r.meter_bytes, amount);
        }
        let raised = m.total_cost().saturating_sub(before);
        self.state.resync_budget = self.state.resync_budget.saturating_sub(raised);
        self.on_report(r.meter_bytes, r.meter_amount);
        let s = &mut self.state;
        // The payee holds (has credited) its voucher: that is as good as an ack for it, so
        // we neither resend it nor count it as unacknowledged debt.
        if let Some(v) = r.latest
            && s.acked.is_none_or(|a| a.seq < v.seq)
        {
            s.acked = Some(VoucherAck {
                channel_id: s.id,
                seq: v.seq,
                credited: v.cumulative_amount,
                metered_bytes: r.meter_bytes,
                metered_amount: r.meter_amount,
            });
        }
        let Some(v) = adopt else { return Ok(None) };
        s.meter.raise_to(v.cumulative_bytes, v.cumulative_amount);
        s.latest = Some(v);
        s.next_seq = s.next_seq.max(v.seq.saturating_add(1));
        Ok(Some(Action::Commit(v)))
    }

    fn check_resync(&self, r: &Resync) -> Result<Option<Voucher>, Reject> {
        if r.channel_id != self.state.id {
            return Err(Reject::WrongChannel);
        }
        let Some(v) = r.latest else { return Ok(None) };
        if v.channel_id != self.state.id {
            return Err(Reject::WrongChannel);
        }
        if !v.verify(&self.state.params.payer) {
            return Err(Reject::ForgedSignature);
        }
        if v.seq == 0 {
            return Err(Reject::Malformed);
        }
        // Compare with what is committed only: a pending voucher below `v` is superseded
        // (its commit will report it not to be sent).
        match self.state.latest {
            Some(o) if v.seq < o.seq => Ok(None),
            Some(o) if v.seq == o.seq => {
                if v.body_bytes() == o.body_bytes() {
                    Ok(None)
                } else {
                    Err(Reject::NonMonotonic)
                }
            }
            Some(o) if !v.is_monotonic_successor_of(&o) => Err(Reject::NonMonotonic),
            _ => Ok(Some(v)),
        }
    }
}
