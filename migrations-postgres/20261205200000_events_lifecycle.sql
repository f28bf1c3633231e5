-- The event queue's outages in the lifecycle log (as ../migrations/20261205200000_events_lifecycle.sql):
-- the events `events_failed` (the `[events]` queue could not be read; `detail` names the queue
-- and the error) and `events_resumed` (it can be read again). No column changes: old rows
-- verify as before.
ALTER TABLE lifecycle_events DROP CONSTRAINT lifecycle_events_event_check;
ALTER TABLE lifecycle_events ADD CONSTRAINT lifecycle_events_event_check
    CHECK (event IN ('start', 'reload', 'stop', 'unclean_stop', 'leader_acquired', 'leader_lost',
                     'events_failed', 'events_resumed'));
