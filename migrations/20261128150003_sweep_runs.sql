-- Quiet sweeps, compacted (DESIGN.md: at most 50 MB a year at the default cadence with 1,000
-- pipelines and nothing to stop). A daemon folds consecutive scheduled sweeps that decided
-- nothing and met no error into one run, written (and chained) every few minutes, at the first
-- sweep that is not quiet, and at shutdown. A run says: `sweeps` sweeps by `pid`, the first
-- started at `first_started_at`, the last finished at `last_finished_at`, and none began more
-- than `max_gap_ms` after the one before it finished: coverage stays provable at the
-- schedule's resolution. Sweeps that decided a stop, failed, or came for another reason
-- (start-up, an edge, a reload) keep their own rows in `sweeps` and `sweep_results`.
CREATE TABLE sweep_runs (
    id                  INTEGER PRIMARY KEY,
    pid                 INTEGER NOT NULL,
    first_sweep_id      INTEGER NOT NULL,   -- the ids its sweeps had (ids of whole sweeps
    last_sweep_id       INTEGER NOT NULL,   -- never fall inside a run's)
    dry_run             INTEGER NOT NULL,
    first_started_at    TEXT    NOT NULL,
    last_finished_at    TEXT    NOT NULL,
    sweeps              INTEGER NOT NULL,
    max_gap_ms          INTEGER NOT NULL,
    max_duration_ms     INTEGER NOT NULL,
    pipelines_seen      INTEGER NOT NULL,   -- the most any of them saw
    executions_seen     INTEGER NOT NULL,   -- the most any of them saw
    api_calls           INTEGER NOT NULL,   -- in all
    throttled           INTEGER NOT NULL    -- in all
);

CREATE INDEX sweep_runs_last ON sweep_runs(last_finished_at);

CREATE TRIGGER sweep_runs_append_only_u BEFORE UPDATE ON sweep_runs BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER sweep_runs_append_only_d BEFORE DELETE ON sweep_runs BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
