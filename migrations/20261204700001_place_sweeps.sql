-- The last sweep of each account and region (`[[account]]`), for `stopd status`: bookkeeping,
-- one row per (account, region), replaced as sweeps go by (not an audit record: the chained
-- sweep log holds each sweep's error, naming the account). Written only with several accounts
-- or regions, and only when a place's result changed or its row is older than five minutes, so
-- quiet sweeps stay (almost) free of writes.
CREATE TABLE place_sweeps (
    account     TEXT    NOT NULL,
    region      TEXT    NOT NULL,
    at          TEXT    NOT NULL,   -- RFC 3339 UTC: when its last sweep ended
    ok          INTEGER NOT NULL,   -- everything read, decided and recorded without an error
    error       TEXT,               -- the first error, in words; NULL when ok
    last_ok_at  TEXT,               -- when its last good sweep ended; NULL: none yet
    PRIMARY KEY (account, region)
);
