-- Operability (issue 16). `policy_loads`: the policy the daemon put in force, at each start and
-- each good reload, as the SHA-256 of the file's bytes: `stopd status` compares the newest with
-- the file on disk ("reload pending"). `notify_delivered`: what each `[[notify]]` target has
-- received. Notifications are not copied into an outbox: the audit rows that cause them (stop
-- outcomes, gate outcomes, exemptions, sweep results) are committed first and *are* the
-- outbox; a target's rows here say which of them it has received, so a kill -9
-- between a stop and its delivery only delays it (at least once, in order).

CREATE TABLE policy_loads (
    id          INTEGER PRIMARY KEY,
    at          TEXT    NOT NULL,           -- RFC 3339 UTC
    pid         INTEGER NOT NULL,
    path        TEXT    NOT NULL,
    hash        TEXT    NOT NULL,           -- SHA-256 of the file's bytes, lowercase hex
    trigger     TEXT    NOT NULL CHECK (trigger IN ('start', 'reload'))
);

CREATE TABLE notify_targets (
    target      TEXT    PRIMARY KEY,        -- the [[notify]] name
    since       TEXT    NOT NULL            -- RFC 3339 UTC: first seen; older records are not sent
);

CREATE TABLE notify_delivered (
    id          INTEGER PRIMARY KEY,
    at          TEXT    NOT NULL,           -- when the receiver accepted it
    target      TEXT    NOT NULL REFERENCES notify_targets(target),
    source      TEXT    NOT NULL,           -- stop_outcomes | gate_outcomes | exemptions | exemption_revocations | sweep_results
    source_id   INTEGER NOT NULL,           -- that table's row id
    attempts    INTEGER NOT NULL
);

CREATE UNIQUE INDEX notify_delivered_event ON notify_delivered(target, source, source_id);

CREATE TRIGGER policy_loads_append_only_u BEFORE UPDATE ON policy_loads BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER policy_loads_append_only_d BEFORE DELETE ON policy_loads BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER notify_delivered_append_only_u BEFORE UPDATE ON notify_delivered BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER notify_delivered_append_only_d BEFORE DELETE ON notify_delivered BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER notify_targets_append_only_u BEFORE UPDATE ON notify_targets BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER notify_targets_append_only_d BEFORE DELETE ON notify_targets BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
