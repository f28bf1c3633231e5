-- A sweep cut short by a clean shutdown (SIGTERM during discovery, or stops left unstarted) is
-- `interrupted`: neither a good sweep nor a failed one. NULL, as in every earlier row, means
-- the sweep ran to its end, good or failed as `error` and `errors` say. A column added with
-- NULL for the rows before it leaves their hashes in the chain as they were (NULL columns are
-- not part of a record's canonical bytes), so no table needs rebuilding.
ALTER TABLE sweep_results ADD COLUMN result TEXT CHECK (result IS NULL OR result IN ('interrupted'));
