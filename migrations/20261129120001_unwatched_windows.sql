-- Freeze windows that began while no daemon was running (DESIGN.md: the `unwatched`
-- notification, "a freeze window started while the daemon was not running, found at the next
-- start"). Written by a `stopd run` start, in the same transaction as its `start` lifecycle
-- event, one row per window of the policy then loaded whose start lies in the gap since the
-- run before it ended (its clean stop, or the last sign of life of an unclean one): the same
-- span `report --coverage` calls `not_running`. Chained like every audit record, and, like the
-- other audit records, the outbox of `[[notify]]` (`notify_delivered.source` =
-- 'unwatched_windows'). At most one row per rule and window start: a window is reported once,
-- whatever happens to the starts after it.
CREATE TABLE unwatched_windows (
    id              INTEGER PRIMARY KEY,
    found_at        TEXT    NOT NULL,       -- the start that found it (RFC 3339 UTC)
    start_event_id  INTEGER NOT NULL REFERENCES lifecycle_events(id),
    rule            TEXT    NOT NULL,
    window_start    TEXT    NOT NULL,
    window_end      TEXT    NOT NULL,
    gap_from        TEXT    NOT NULL,       -- the daemon was not running from
    gap_to          TEXT    NOT NULL        -- to (the start that found it)
);

CREATE UNIQUE INDEX unwatched_windows_window ON unwatched_windows(rule, window_start);
CREATE INDEX unwatched_windows_found ON unwatched_windows(found_at);

CREATE TRIGGER unwatched_windows_append_only_u BEFORE UPDATE ON unwatched_windows BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER unwatched_windows_append_only_d BEFORE DELETE ON unwatched_windows BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
