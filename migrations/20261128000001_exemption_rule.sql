-- A break-glass exemption may be limited to one rule (`stopd exempt add --rule NAME`): NULL
-- means every rule, as before. Existing rows keep NULL.
ALTER TABLE exemptions ADD COLUMN rule TEXT;
