-- Lifecycle events per node, and leadership (issue 28, DESIGN.md "High availability"):
--
-- - `node`: the node that recorded the event (`[ha] node`); NULL on a single host (SQLite) and
--   in every row written before this migration. A start's unclean-stop check looks only at its
--   own node's last start or stop.
-- - `epoch`: the lease's epoch of a `leader_acquired` or `leader_lost` (NULL otherwise).
-- - two events: `leader_acquired` (this node took the lease, at `epoch`) and `leader_lost` (it
--   gave it up or lost it; `detail` says why).
--
-- Both columns are nullable and NULL is left out of a record's canonical bytes
-- (crates/audit/src/chain.rs), so every chained row verifies as before.
--
-- SQLite cannot widen a CHECK in place: the table is rebuilt with its rows, ids kept. Its rows
-- are set aside, the table dropped and made anew, and the rows put back; unwatched_windows
-- refers to it, so foreign keys are checked at commit (defer_foreign_keys), when every row it
-- refers to is back.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE lifecycle_events_before_nodes AS SELECT * FROM lifecycle_events;

DROP TABLE lifecycle_events;

CREATE TABLE lifecycle_events (
    id          INTEGER PRIMARY KEY,
    at          TEXT    NOT NULL,
    event       TEXT    NOT NULL CHECK (event IN ('start', 'reload', 'stop', 'unclean_stop',
                    'leader_acquired', 'leader_lost')),
    pid         INTEGER NOT NULL,
    version     TEXT,
    policy_hash TEXT,
    result      TEXT    CHECK (result IS NULL OR result IN ('ok', 'refused')),
    detail      TEXT,
    node        TEXT,
    epoch       INTEGER
);

INSERT INTO lifecycle_events (id, at, event, pid, version, policy_hash, result, detail)
SELECT id, at, event, pid, version, policy_hash, result, detail FROM lifecycle_events_before_nodes
ORDER BY id;

DROP TABLE lifecycle_events_before_nodes;

CREATE INDEX lifecycle_events_at ON lifecycle_events(at);

CREATE TRIGGER lifecycle_events_append_only_u BEFORE UPDATE ON lifecycle_events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER lifecycle_events_append_only_d BEFORE DELETE ON lifecycle_events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
