-- What the ledger learned from the chain once and needs before it can reach it again
-- (docs/ledger.md, "RPC outages"): the token's decimals, so the journal's channels back the
-- node's channels at start even while the RPC is down.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
