-- The event queue's outages in the lifecycle log (issue 29, DESIGN.md "Event-driven
-- enforcement"): two events, `events_failed` (the `[events]` queue could not be read, after it
-- could: `detail` names the queue and the error; the outbox of the `events_failed`
-- notification) and `events_resumed` (it can be read again). The consumer records the change,
-- not each failed poll, reading the latest of the two from this table (of any node), so a
-- daemon restarted against a broken queue, or a new leader, records nothing new.
--
-- SQLite cannot widen a CHECK in place: the table is rebuilt with its rows, ids kept, as
-- 20261205100001_lifecycle_nodes.sql did. Its rows are set aside, the table dropped and made
-- anew, and the rows put back; unwatched_windows refers to it, so foreign keys are checked at
-- commit (defer_foreign_keys), when every row it refers to is back. No column changes: every
-- chained row verifies as before.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE lifecycle_events_before_queue AS SELECT * FROM lifecycle_events;

DROP TABLE lifecycle_events;

CREATE TABLE lifecycle_events (
    id          INTEGER PRIMARY KEY,
    at          TEXT    NOT NULL,
    event       TEXT    NOT NULL CHECK (event IN ('start', 'reload', 'stop', 'unclean_stop',
                    'leader_acquired', 'leader_lost', 'events_failed', 'events_resumed')),
    pid         INTEGER NOT NULL,
    version     TEXT,
    policy_hash TEXT,
    result      TEXT    CHECK (result IS NULL OR result IN ('ok', 'refused')),
    detail      TEXT,
    node        TEXT,
    epoch       INTEGER
);

INSERT INTO lifecycle_events (id, at, event, pid, version, policy_hash, result, detail, node, epoch)
SELECT id, at, event, pid, version, policy_hash, result, detail, node, epoch
FROM lifecycle_events_before_queue
ORDER BY id;

DROP TABLE lifecycle_events_before_queue;

CREATE INDEX lifecycle_events_at ON lifecycle_events(at);

CREATE TRIGGER lifecycle_events_append_only_u BEFORE UPDATE ON lifecycle_events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER lifecycle_events_append_only_d BEFORE DELETE ON lifecycle_events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
