-- Ad-hoc freezes limited to some accounts and regions (`stopd freeze add --account GLOB
-- --region GLOB`), as a [[freeze]]'s `accounts = [...]` and `regions = [...]` are. NULL: every
-- account, every region (as every freeze recorded before this migration). NULL columns are left
-- out of a record's chain hash, so every earlier hash stays as it was.
ALTER TABLE freezes ADD COLUMN account_glob TEXT;
ALTER TABLE freezes ADD COLUMN region_glob TEXT;
