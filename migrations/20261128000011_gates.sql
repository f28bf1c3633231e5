-- Gates: stage transitions stopd disabled while a gating freeze was open, and enabled again
-- after. Like stops, an action is two rows: `gates` (the intent, committed before the call)
-- and `gate_outcomes` (after it). An observation without a call (a transition a person had
-- already disabled, one whose reason someone changed) is an intent and an outcome at once.

CREATE TABLE gates (
    id          INTEGER PRIMARY KEY,
    at          TEXT    NOT NULL,                       -- RFC 3339 UTC
    sweep_id    INTEGER REFERENCES sweeps(id),
    pipeline    TEXT    NOT NULL,
    stage       TEXT    NOT NULL,                       -- its inbound transition
    rule        TEXT    NOT NULL,                       -- the gating freeze
    action      TEXT    NOT NULL CHECK (action IN ('disable', 'enable')),
    reason      TEXT    NOT NULL,                       -- as sent (disable), or as found (enable)
    dry_run     INTEGER NOT NULL
);

CREATE TABLE gate_outcomes (
    gate_id     INTEGER PRIMARY KEY REFERENCES gates(id),
    at          TEXT    NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('done', 'already_disabled', 'left_alone',
                    'failed', 'dry_run', 'pipeline_not_found')),
    error       TEXT
);

CREATE INDEX gates_transition ON gates(pipeline, stage);
CREATE INDEX gates_at ON gates(at);

CREATE TRIGGER gates_append_only_u BEFORE UPDATE ON gates BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER gates_append_only_d BEFORE DELETE ON gates BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER gate_outcomes_append_only_u BEFORE UPDATE ON gate_outcomes BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER gate_outcomes_append_only_d BEFORE DELETE ON gate_outcomes BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
