-- Lifecycle events per node, and leadership (as ../migrations/20261205100001_lifecycle_nodes.sql):
-- `node` (the node that recorded the event; NULL in rows from before), `epoch` (the lease's
-- epoch of a leader event), and the events `leader_acquired` and `leader_lost`. Both columns
-- are nullable and NULL is left out of a record's canonical bytes: old rows verify as before.
ALTER TABLE lifecycle_events
    ADD COLUMN node  TEXT COLLATE "C",
    ADD COLUMN epoch BIGINT;

ALTER TABLE lifecycle_events DROP CONSTRAINT lifecycle_events_event_check;
ALTER TABLE lifecycle_events ADD CONSTRAINT lifecycle_events_event_check
    CHECK (event IN ('start', 'reload', 'stop', 'unclean_stop', 'leader_acquired', 'leader_lost'));
