-- The hash chain over every audit record (DESIGN.md, "Verifiable audit"). One row per audit
-- record, in the order they were written: `seq` counts from 1 without gaps, `tbl` and `row_id`
-- name the record, `hash` = SHA-256(previous hash || canonical bytes of the record), the first
-- previous hash being 32 zero bytes. The canonical bytes are spelled in
-- crates/daemon/src/store/chain.rs. A chain row is written in the same transaction as its
-- record.
CREATE TABLE audit_chain (
    seq     INTEGER PRIMARY KEY,
    tbl     TEXT    NOT NULL,
    row_id  INTEGER NOT NULL,
    hash    BLOB    NOT NULL
);

CREATE TRIGGER audit_chain_append_only_u BEFORE UPDATE ON audit_chain BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_chain_append_only_d BEFORE DELETE ON audit_chain BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- The rows written before the chain existed are chained once, by the daemon, right after this
-- migration (SQL has no SHA-256): this table says that is still to do, and is dropped in the
-- transaction that does it.
CREATE TABLE audit_chain_backfill (pending INTEGER NOT NULL);
INSERT INTO audit_chain_backfill VALUES (1);
