-- Why a break-glass exemption was revoked (`stopd exempt revoke ID --reason TEXT`), as
-- freeze_lifts keeps why a freeze was lifted. NULL for revocations recorded before, and when no
-- reason was given: the hash chain leaves NULL columns out, so earlier records hash as before.
ALTER TABLE exemption_revocations ADD COLUMN reason TEXT;
