-- The event consumer's view of its queue (see the SQLite migration of the same name).
CREATE TABLE event_queue (
    queue_url         TEXT COLLATE "C"  NOT NULL PRIMARY KEY,
    at                TEXT COLLATE "C"  NOT NULL,
    last_received_at  TEXT COLLATE "C",
    depth             BIGINT,
    error             TEXT COLLATE "C"
);
