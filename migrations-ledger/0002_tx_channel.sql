-- Which off-chain channel an open (and its approve) is for: a node may pay the same peer on
-- a link channel and on an exit channel (docs/ledger.md, "Exit channels"), each backed by its
-- own on-chain channel. NULL in rows written before it: those were link channels.
ALTER TABLE txs ADD COLUMN channel_id BLOB CHECK (channel_id IS NULL OR length(channel_id) = 32);
