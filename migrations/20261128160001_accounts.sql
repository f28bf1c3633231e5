-- Many accounts and regions (`[[account]]`): each stop and each gate action records the
-- account (its `[[account]] name`; `default` for the ambient credentials without `[[account]]`)
-- and the region it was made in. Rows written before this migration have NULL in both: they
-- were made in the one account of the ambient credentials. NULL columns are left out of a
-- record's chain hash, so every earlier hash stays as it was.
ALTER TABLE stops ADD COLUMN account TEXT;
ALTER TABLE stops ADD COLUMN region TEXT;
ALTER TABLE gates ADD COLUMN account TEXT;
ALTER TABLE gates ADD COLUMN region TEXT;

CREATE INDEX stops_account ON stops(account, region);
CREATE INDEX gates_place ON gates(account, region, pipeline, stage);
