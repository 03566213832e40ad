-- Voucher retention (docs/money.md, "Voucher retention"): the wallet's size is bounded by its
-- channels, not by the vouchers a payer chooses to send. Per channel the latest voucher is
-- always kept; older ones are thinned to one per minute (last day) and one per hour (last 30
-- days), the deltas of removed vouchers being added to the next kept one, and vouchers older
-- than that are folded into `voucher_base`. 0001's append-only triggers are replaced by ones
-- that still forbid changing anything a voucher's signature covers.

DROP TRIGGER vouchers_immutable;
DROP TRIGGER vouchers_no_delete;

-- Per channel, the totals of the newest voucher folded away (older than the retention).
CREATE TABLE voucher_base (
    channel_id        BLOB PRIMARY KEY REFERENCES channels (id),
    seq               INTEGER NOT NULL CHECK (seq > 0),
    cumulative_amount TEXT NOT NULL CHECK (length(cumulative_amount) = 39),
    cumulative_bytes  INTEGER NOT NULL CHECK (cumulative_bytes >= 0)
) WITHOUT ROWID;

-- A stored voucher's signed fields and time never change; its delta may only grow (when an
-- older voucher is folded into it).
CREATE TRIGGER vouchers_signed_immutable BEFORE UPDATE ON vouchers
WHEN NEW.channel_id != OLD.channel_id OR NEW.seq != OLD.seq
  OR NEW.cumulative_amount != OLD.cumulative_amount
  OR NEW.cumulative_bytes != OLD.cumulative_bytes OR NEW.price_epoch != OLD.price_epoch
  OR NEW.signature != OLD.signature OR NEW.committed_at != OLD.committed_at
  OR NEW.delta < OLD.delta
BEGIN
    SELECT RAISE(ABORT, 'vouchers are immutable');
END;

-- The latest voucher of a channel is never deleted.
CREATE TRIGGER vouchers_keep_latest BEFORE DELETE ON vouchers
WHEN OLD.seq >= (SELECT latest_seq FROM channels WHERE id = OLD.channel_id)
BEGIN
    SELECT RAISE(ABORT, 'the latest voucher is kept');
END;

-- The base only moves forward and is never deleted.
CREATE TRIGGER voucher_base_monotonic BEFORE UPDATE ON voucher_base
WHEN NEW.seq < OLD.seq OR NEW.cumulative_amount < OLD.cumulative_amount
  OR NEW.cumulative_bytes < OLD.cumulative_bytes
BEGIN
    SELECT RAISE(ABORT, 'non-monotonic voucher base');
END;

CREATE TRIGGER voucher_base_no_delete BEFORE DELETE ON voucher_base
BEGIN
    SELECT RAISE(ABORT, 'the voucher base is kept');
END;
