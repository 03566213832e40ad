-- Node state that must survive restarts, one integer per key (DESIGN.md §5).
-- 'price_epoch': the last price epoch this node announced. Bumped in its own durable
-- transaction at every daemon start and every fee change, so an epoch never repeats, even
-- across crashes. Absent means 0 (a wallet created before this migration).

CREATE TABLE node_state (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- Defence in depth: the price epoch only increases and is never deleted, whatever the
-- application code does.
CREATE TRIGGER node_state_epoch_monotonic
BEFORE UPDATE ON node_state
WHEN OLD.key = 'price_epoch' AND (NEW.key != OLD.key OR NEW.value <= OLD.value)
BEGIN
    SELECT RAISE(ABORT, 'price epoch must increase');
END;

CREATE TRIGGER node_state_epoch_no_delete
BEFORE DELETE ON node_state
WHEN OLD.key = 'price_epoch'
BEGIN
    SELECT RAISE(ABORT, 'price epoch must increase');
END;
