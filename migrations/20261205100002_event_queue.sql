-- The event consumer's view of its queue ([events] queue_url), for `stopd status`: bookkeeping,
-- one row per queue, replaced in place (not an audit record: what the events led to is in the
-- chained stops). Written when the queue's readability changes and at most once a minute
-- otherwise.
CREATE TABLE event_queue (
    queue_url         TEXT    NOT NULL PRIMARY KEY,
    at                TEXT    NOT NULL,   -- RFC 3339 UTC: when the row was written
    last_received_at  TEXT,               -- when a message was last received; NULL: none yet
    depth             INTEGER,            -- ApproximateNumberOfMessages when last asked
    error             TEXT                -- why the queue cannot be read; NULL while it can
);
