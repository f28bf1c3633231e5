-- Ad-hoc freezes ("stop the line", `stopd freeze add`): a one-off freeze from now until `until`,
-- stored and audited here like break-glass exemptions, not in the policy file. A freeze lifted
-- early has a row in `freeze_lifts` (who, when, why); an expired one stays on record.

CREATE TABLE freezes (
    id              INTEGER PRIMARY KEY,
    created_at      TEXT    NOT NULL,       -- RFC 3339 UTC: the window starts here
    until           TEXT    NOT NULL,       -- RFC 3339 UTC: the window ends here (exclusive)
    pipeline_glob   TEXT    NOT NULL,
    exclude_glob    TEXT,                   -- NULL: none
    tags            TEXT,                   -- JSON object KEY -> VALUE; NULL: none
    mode            TEXT    NOT NULL CHECK (mode IN ('finish', 'abandon')),
    gate            INTEGER NOT NULL,       -- also hold new work at stage transitions
    reason          TEXT    NOT NULL,
    created_by      TEXT    NOT NULL
);

CREATE TABLE freeze_lifts (
    freeze_id   INTEGER PRIMARY KEY REFERENCES freezes(id),
    at          TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    lifted_by   TEXT    NOT NULL
);

CREATE TRIGGER freezes_append_only_u BEFORE UPDATE ON freezes BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER freezes_append_only_d BEFORE DELETE ON freezes BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER freeze_lifts_append_only_u BEFORE UPDATE ON freeze_lifts BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER freeze_lifts_append_only_d BEFORE DELETE ON freeze_lifts BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
