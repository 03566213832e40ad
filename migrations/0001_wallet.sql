-- Bitcloud wallet schema (DESIGN.md §5).
-- Amounts are TEXT holding the smallest-unit count as a 39-digit zero-padded decimal, so they
-- are exact (u128) and still compare and sort like numbers in SQL. Never REAL.
-- Values that are u64 in Rust and have no ordering use here (nonce, price rate) are TEXT too;
-- seq and byte counts are INTEGER, range-checked on the way in.

CREATE TABLE channels (
    id                BLOB PRIMARY KEY CHECK (length(id) = 32),
    -- 'outgoing': we are the payer; 'incoming': we are the payee.
    direction         TEXT NOT NULL CHECK (direction IN ('outgoing', 'incoming')),
    payer             BLOB NOT NULL CHECK (length(payer) = 32),
    payee             BLOB NOT NULL CHECK (length(payee) = 32),
    nonce             TEXT NOT NULL,
    opened_at         INTEGER NOT NULL,
    -- Latest committed voucher (denormalised from `vouchers` for the balance).
    latest_seq        INTEGER NOT NULL DEFAULT 0 CHECK (latest_seq >= 0),
    latest_amount     TEXT NOT NULL DEFAULT '000000000000000000000000000000000000000'
                      CHECK (length(latest_amount) = 39),
    latest_bytes      INTEGER NOT NULL DEFAULT 0 CHECK (latest_bytes >= 0),
    -- Last meter checkpoint: totals, and the folded base of the snapshot.
    meter_bytes       INTEGER NOT NULL DEFAULT 0 CHECK (meter_bytes >= 0),
    meter_amount      TEXT NOT NULL DEFAULT '000000000000000000000000000000000000000'
                      CHECK (length(meter_amount) = 39),
    meter_base_bytes  INTEGER NOT NULL DEFAULT 0 CHECK (meter_base_bytes >= 0),
    meter_base_amount TEXT NOT NULL DEFAULT '000000000000000000000000000000000000000'
                      CHECK (length(meter_base_amount) = 39),
    checkpoint_at     INTEGER
) WITHOUT ROWID;

-- Every committed voucher. Outgoing rows are written before the voucher is sent, incoming
-- rows before the payer is credited.
CREATE TABLE vouchers (
    channel_id        BLOB NOT NULL REFERENCES channels (id),
    seq               INTEGER NOT NULL CHECK (seq > 0),
    cumulative_amount TEXT NOT NULL CHECK (length(cumulative_amount) = 39),
    cumulative_bytes  INTEGER NOT NULL CHECK (cumulative_bytes >= 0),
    price_epoch       INTEGER NOT NULL CHECK (price_epoch >= 0),
    signature         BLOB NOT NULL CHECK (length(signature) = 64),
    -- Increase of cumulative_amount over the previous voucher of the channel.
    delta             TEXT NOT NULL CHECK (length(delta) = 39),
    committed_at      INTEGER NOT NULL,
    PRIMARY KEY (channel_id, seq)
) WITHOUT ROWID;

CREATE INDEX vouchers_by_time ON vouchers (committed_at);

-- Open buckets of the last meter checkpoint.
CREATE TABLE meter_buckets (
    channel_id        BLOB NOT NULL REFERENCES channels (id),
    epoch             INTEGER NOT NULL CHECK (epoch >= 0),
    units_per_mib     TEXT NOT NULL,
    bytes             INTEGER NOT NULL CHECK (bytes >= 0),
    PRIMARY KEY (channel_id, epoch, units_per_mib)
) WITHOUT ROWID;

-- Defence in depth: the latest voucher of a channel can never move backwards, whatever the
-- application code does.
CREATE TRIGGER channels_latest_monotonic
BEFORE UPDATE OF latest_seq, latest_amount, latest_bytes ON channels
WHEN NEW.latest_seq < OLD.latest_seq
  OR NEW.latest_amount < OLD.latest_amount
  OR NEW.latest_bytes < OLD.latest_bytes
BEGIN
    SELECT RAISE(ABORT, 'non-monotonic voucher');
END;

-- Committed vouchers are never rewritten or deleted.
CREATE TRIGGER vouchers_immutable BEFORE UPDATE ON vouchers
BEGIN
    SELECT RAISE(ABORT, 'vouchers are append-only');
END;

CREATE TRIGGER vouchers_no_delete BEFORE DELETE ON vouchers
BEGIN
    SELECT RAISE(ABORT, 'vouchers are append-only');
END;

-- History: every committed voucher with its direction and peer.
CREATE VIEW history AS
SELECT v.committed_at      AS committed_at,
       c.direction         AS direction,
       v.channel_id        AS channel_id,
       CASE c.direction WHEN 'outgoing' THEN c.payee ELSE c.payer END AS peer,
       v.seq               AS seq,
       v.cumulative_amount AS cumulative_amount,
       v.delta             AS delta,
       v.cumulative_bytes  AS cumulative_bytes,
       v.price_epoch       AS price_epoch
FROM vouchers v
JOIN channels c ON c.id = v.channel_id;

-- Earnings: the incoming part of the history.
CREATE VIEW earnings AS
SELECT committed_at, channel_id, peer, seq, delta, cumulative_amount
FROM history
WHERE direction = 'incoming';
