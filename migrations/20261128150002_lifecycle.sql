-- Daemon lifecycle events (DESIGN.md, "Verifiable audit"): each start of `stopd run` (version,
-- pid, SHA-256 of the policy file), each reload (ok or refused; the new policy's hash), each
-- clean stop, and an unclean stop found at the next start (a start with no stop after it: `at`
-- is then the last sign of life of that process). Chained like every audit record.
CREATE TABLE lifecycle_events (
    id          INTEGER PRIMARY KEY,
    at          TEXT    NOT NULL,
    event       TEXT    NOT NULL CHECK (event IN ('start', 'reload', 'stop', 'unclean_stop')),
    pid         INTEGER NOT NULL,
    version     TEXT,
    policy_hash TEXT,
    result      TEXT    CHECK (result IS NULL OR result IN ('ok', 'refused')),
    detail      TEXT
);

CREATE INDEX lifecycle_events_at ON lifecycle_events(at);

CREATE TRIGGER lifecycle_events_append_only_u BEFORE UPDATE ON lifecycle_events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER lifecycle_events_append_only_d BEFORE DELETE ON lifecycle_events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
