-- On-chain settlement (docs/ledger.md): a voucher may carry the payer's EIP-712 signature over
-- the same totals for the on-chain channel that backs its channel. It is what the payee
-- claims with, so it is stored with the voucher and, like every signed field, never changes.

ALTER TABLE vouchers ADD COLUMN chain_sig BLOB
    CHECK (chain_sig IS NULL OR length(chain_sig) = 65);

DROP TRIGGER vouchers_signed_immutable;

CREATE TRIGGER vouchers_signed_immutable BEFORE UPDATE ON vouchers
WHEN NEW.channel_id != OLD.channel_id OR NEW.seq != OLD.seq
  OR NEW.cumulative_amount != OLD.cumulative_amount
  OR NEW.cumulative_bytes != OLD.cumulative_bytes OR NEW.price_epoch != OLD.price_epoch
  OR NEW.signature != OLD.signature OR NEW.committed_at != OLD.committed_at
  OR NEW.chain_sig IS NOT OLD.chain_sig
  OR NEW.delta < OLD.delta
BEGIN
    SELECT RAISE(ABORT, 'vouchers are immutable');
END;
