-- The run of quiet sweeps a daemon has open (see 20261128150003_sweep_runs.sql), as of its last
-- quiet sweep: what `status` and `report --coverage` read of a daemon sweeping on schedule
-- between two `sweep_runs` rows (DESIGN.md: "A daemon sweeping on schedule is watching,
-- whether its sweeps are recorded one by one or grouped"). At most one row (one daemon per
-- database: the run lock), replaced at each quiet sweep and deleted in the transaction that
-- writes the run to `sweep_runs`; a row left by a killed daemon is written to `sweep_runs`
-- (chained) by the next start. Not an audit record itself: its columns are those of
-- `sweep_runs`, which is.
CREATE TABLE sweep_run_open (
    slot                INTEGER PRIMARY KEY CHECK (slot = 1),
    pid                 INTEGER NOT NULL,
    first_sweep_id      INTEGER NOT NULL,
    last_sweep_id       INTEGER NOT NULL,
    dry_run             INTEGER NOT NULL,
    first_started_at    TEXT    NOT NULL,
    last_finished_at    TEXT    NOT NULL,
    sweeps              INTEGER NOT NULL,
    max_gap_ms          INTEGER NOT NULL,
    max_duration_ms     INTEGER NOT NULL,
    pipelines_seen      INTEGER NOT NULL,
    executions_seen     INTEGER NOT NULL,
    api_calls           INTEGER NOT NULL,
    throttled           INTEGER NOT NULL
);
