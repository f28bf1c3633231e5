-- The audit log. Every table is append-only: triggers refuse UPDATE and DELETE, so a row,
-- once written, says what happened forever. A stop is two rows: `stops` (the decision,
-- written and committed before the API call) and `stop_outcomes` (written after it). A stop
-- without an outcome is pending: the call may or may not have reached CodePipeline, and the
-- next start resolves it by reading the execution's status.

CREATE TABLE sweeps (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT    NOT NULL,           -- RFC 3339 UTC, milliseconds
    trigger     TEXT    NOT NULL,           -- schedule | edge | startup | once | catch-up
    dry_run     INTEGER NOT NULL,
    pid         INTEGER NOT NULL
);

CREATE TABLE sweep_results (
    sweep_id            INTEGER PRIMARY KEY REFERENCES sweeps(id),
    finished_at         TEXT    NOT NULL,
    duration_ms         INTEGER NOT NULL,
    pipelines_seen      INTEGER NOT NULL,
    pipelines_in_scope  INTEGER NOT NULL,
    executions_seen     INTEGER NOT NULL,
    stops_decided       INTEGER NOT NULL,
    api_calls           INTEGER NOT NULL,
    throttled           INTEGER NOT NULL,
    errors              INTEGER NOT NULL,
    error               TEXT                -- why the sweep could not see everything, if so
);

CREATE TABLE stops (
    id              INTEGER PRIMARY KEY,
    at              TEXT    NOT NULL,       -- when the stop was decided (RFC 3339 UTC)
    sweep_id        INTEGER REFERENCES sweeps(id),   -- NULL for `stopd stop`
    pipeline        TEXT    NOT NULL,
    execution_id    TEXT    NOT NULL,
    rule            TEXT    NOT NULL,
    rule_kind       TEXT    NOT NULL CHECK (rule_kind IN ('freeze', 'timeout', 'manual')),
    mode            TEXT    NOT NULL CHECK (mode IN ('finish', 'abandon')),
    reason          TEXT    NOT NULL,
    explanation     TEXT    NOT NULL,
    dry_run         INTEGER NOT NULL,
    escalate_at     TEXT,                   -- finish stops: when to stop again with abandon
    escalation_of   INTEGER REFERENCES stops(id)
);

CREATE TABLE stop_outcomes (
    stop_id     INTEGER PRIMARY KEY REFERENCES stops(id),
    at          TEXT    NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('stopped', 'already_stopping', 'not_stoppable',
                    'pipeline_not_found', 'rejected', 'failed', 'dry_run')),
    attempts    INTEGER NOT NULL,
    throttled   INTEGER NOT NULL,
    elapsed_ms  INTEGER NOT NULL,
    error       TEXT,
    reconciled  INTEGER NOT NULL DEFAULT 0  -- 1: resolved at start-up from the execution's status
);

CREATE TABLE exemptions (
    id              INTEGER PRIMARY KEY,
    created_at      TEXT NOT NULL,
    pipeline_glob   TEXT NOT NULL,
    until           TEXT NOT NULL,
    reason          TEXT NOT NULL,
    created_by      TEXT NOT NULL
);

CREATE TABLE exemption_revocations (
    exemption_id    INTEGER PRIMARY KEY REFERENCES exemptions(id),
    at              TEXT NOT NULL,
    revoked_by      TEXT NOT NULL
);

CREATE INDEX stops_at ON stops(at);
CREATE INDEX stops_execution ON stops(execution_id);
CREATE INDEX stops_escalate ON stops(escalate_at) WHERE escalate_at IS NOT NULL;
CREATE INDEX sweeps_started ON sweeps(started_at);

CREATE TRIGGER sweeps_append_only_u BEFORE UPDATE ON sweeps BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER sweeps_append_only_d BEFORE DELETE ON sweeps BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER sweep_results_append_only_u BEFORE UPDATE ON sweep_results BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER sweep_results_append_only_d BEFORE DELETE ON sweep_results BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER stops_append_only_u BEFORE UPDATE ON stops BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER stops_append_only_d BEFORE DELETE ON stops BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER stop_outcomes_append_only_u BEFORE UPDATE ON stop_outcomes BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER stop_outcomes_append_only_d BEFORE DELETE ON stop_outcomes BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER exemptions_append_only_u BEFORE UPDATE ON exemptions BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER exemptions_append_only_d BEFORE DELETE ON exemptions BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER revocations_append_only_u BEFORE UPDATE ON exemption_revocations BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER revocations_append_only_d BEFORE DELETE ON exemption_revocations BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
