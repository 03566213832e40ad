-- The on-chain ledger's journal (docs/ledger.md, "Journal"), in data_dir/ledger.db beside the
-- wallet. Every transaction is stored here, signed, before it is broadcast, so after a crash
-- at any instant it is re-broadcast (same bytes, same hash: idempotent) and its outcome is
-- processed exactly once. Token amounts are decimal TEXT of base units (exact, any width).

CREATE TABLE txs (
    hash        BLOB PRIMARY KEY CHECK (length(hash) = 32),
    nonce       INTEGER NOT NULL CHECK (nonce >= 0),
    kind        TEXT NOT NULL
                CHECK (kind IN ('approve', 'open', 'top_up', 'claim', 'close', 'withdraw')),
    peer        BLOB CHECK (peer IS NULL OR length(peer) = 32),
    onchain_id  BLOB CHECK (onchain_id IS NULL OR length(onchain_id) = 32),
    -- open/top_up: the amount locked; claim: the cumulative amount claimed.
    amount      TEXT,
    raw         BLOB NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'mined', 'failed')),
    gas_used    INTEGER,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX txs_pending ON txs (state, nonce);

-- On-chain channels that back our link channels, both directions.
CREATE TABLE chain_channels (
    onchain_id  BLOB PRIMARY KEY CHECK (length(onchain_id) = 32),
    direction   TEXT NOT NULL CHECK (direction IN ('outgoing', 'incoming')),
    peer        BLOB NOT NULL CHECK (length(peer) = 32),
    channel_id  BLOB NOT NULL CHECK (length(channel_id) = 32),
    payer       BLOB NOT NULL CHECK (length(payer) = 20),
    payee       BLOB NOT NULL CHECK (length(payee) = 20),
    base_seq    INTEGER NOT NULL CHECK (base_seq >= 0),
    base_amount TEXT NOT NULL,
    base_bytes  INTEGER NOT NULL CHECK (base_bytes >= 0),
    deposit     TEXT NOT NULL,
    claimed     TEXT NOT NULL,
    close_at    INTEGER,
    state       TEXT NOT NULL CHECK (state IN ('open', 'closing', 'closed')),
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
