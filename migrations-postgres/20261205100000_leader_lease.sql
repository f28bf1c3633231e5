-- Leadership by lease (DESIGN.md, "High availability (PostgreSQL)"): one row, the node that
-- leads, its epoch, and when its lease ends by the database's clock. A standby takes the row
-- over only once `expires_at` has passed, with epoch + 1; every stop intent, outcome and gate
-- action of a leader is written in a transaction that first reads this row FOR SHARE and checks
-- holder and epoch (crates/audit/src/writer.rs), so a leader whose lease was taken over can no
-- longer record an intent, and since the intent precedes the call, never calls AWS.
--
-- Not an audited table: it is state, updated in place at every renewal. What leadership did is
-- audited as lifecycle events (`leader_acquired`, `leader_lost`).
CREATE TABLE leader_lease (
    id          SMALLINT PRIMARY KEY CHECK (id = 1),
    holder      TEXT COLLATE "C" NOT NULL,
    epoch       BIGINT NOT NULL CHECK (epoch >= 1),
    pid         BIGINT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    renewed_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
